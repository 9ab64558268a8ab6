"""e2e target for `top`: leak() keeps a 64 KiB bytearray every 20 ms (about 3.2 MB/s) while
churn() makes and drops thousands of small objects and cache_put() fills a bounded cache for its
first 8 s (usage: top_leak.py READY_FILE [LIFETIME_S]).

Once warmed up it writes READY_FILE (its pid) atomically. With LIFETIME_S it exits 0 after that
many seconds (to test that `top` notices the target leaving); otherwise it runs until killed.
The leak is paced by the clock, so its rate does not depend on how fast the interpreter runs;
churn() runs for about half of each period and the process sleeps the rest.
Python 3.8+ standard library only.
"""
import sys
import time

import pmsgrowth

CHUNK = 64 * 1024
PERIOD = 0.02
KEPT = []
CACHE_SIZE = 40000
CACHE = [None] * CACHE_SIZE
_serial = 0


def leak():
    KEPT.append(bytearray(b"\x5a") * CHUNK)  # every page touched here, on this line


def cache_put():
    """100 small entries into a bounded cache that replaces its oldest: it fills in about 8 s
    (some 5 MiB), then stays flat: steady growth that levels off, which is not a leak."""
    global _serial
    for _ in range(100):
        _serial += 1
        CACHE[_serial % CACHE_SIZE] = ("entry-%08d" % _serial, _serial)


def main():
    if len(sys.argv) not in (2, 3):
        pmsgrowth.usage_exit(__doc__.split("\n\n")[0])
    ready = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) == 3 else None
    for _ in range(20):  # warm-up: imports and pools settle before anyone attaches
        pmsgrowth.churn()
    pmsgrowth.write_ready(ready)
    start = time.monotonic()
    deadline = start
    while lifetime is None or time.monotonic() - start < lifetime:
        deadline += PERIOD
        leak()
        cache_put()
        while time.monotonic() < deadline - PERIOD / 2:
            pmsgrowth.churn()
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)


if __name__ == "__main__":
    main()
