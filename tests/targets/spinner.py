"""e2e target: one thread spins in pure Python holding the GIL while the others sleep
(usage: spinner.py TRUTH.json).

The spinning thread's innermost frame is `Spinner.spin` at a line between the SPIN-FIRST and SPIN-LAST
markers; the frames under it are stable. The truth file carries those bounds under "spin".
"""
import os
import sys
import threading

import pmstruth
from pmstruth import park, register


class Spinner:
    def spin(self, spin_info):
        register("spinner", spin_info)
        n = 0
        while True:  # SPIN-FIRST
            n += 1
            if n > 1000000:
                n = 0  # SPIN-LAST


def spin_entry(spin_info):
    Spinner().spin(spin_info)


def sleeper_entry():
    register("sleeper")
    park()


def waiter_entry():
    register("waiter")
    pmstruth.park_event()


def main():
    truth = os.path.abspath(sys.argv[1])
    me = os.path.abspath(__file__)
    first, last = pmstruth.marker_lines(me, "# SPIN-" "FIRST", "# SPIN-" "LAST")
    spin_info = {"function": pmstruth.qualname(Spinner.spin.__code__), "name": "spin",
                 "file": Spinner.spin.__code__.co_filename, "first": first, "last": last}
    threads = [threading.Thread(target=spin_entry, args=(spin_info,), name="spinner"),
               threading.Thread(target=sleeper_entry, name="sleeper"),
               threading.Thread(target=waiter_entry, name="waiter")]
    for t in threads:
        t.daemon = True
        t.start()
    register("main")
    pmstruth.start_reporter(truth, len(threads) + 1, {"target": "spinner"})
    park()


if __name__ == "__main__":
    main()
