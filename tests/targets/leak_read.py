"""e2e target for `record`: leak() keeps what os.read() returns, 1 MiB from /dev/zero every 250 ms
(about 4 MB/s), while churn() makes and drops small objects
(usage: leak_read.py TRUTH.json TIMELINE [LIFETIME_S]).

The interpreter allocates each 1 MiB bytes object with malloc (fresh, untouched mmap'ed memory) and
the kernel fills it: the pages are first touched by the kernel inside read(2) (kernel-side page
faults, not user ones), in the thread running leak(), on the LEAK-LINE.
"""
import os
import sys

import pmsgrowth

CHUNK = 1024 * 1024
PERIOD = 0.25
KEPT = []
FD = os.open("/dev/zero", os.O_RDONLY)


def leak():
    KEPT.append(os.read(FD, CHUNK))  # LEAK-LINE


def main():
    truth, timeline, lifetime, _ = pmsgrowth.parse_args(sys.argv, __doc__.split("\n\n")[0])
    pmsgrowth.run(leak, pmsgrowth.churn, PERIOD, truth, timeline, lifetime,
                  extra={"target": "leak_read", "chunk": CHUNK})


if __name__ == "__main__":
    main()
