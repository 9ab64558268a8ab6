"""The anchor workload: churn of about 400 short-lived objects per iteration, plus a leak of one
1 KB `bytes` per iteration from leaky_function (bytes(1000) is 1,033 bytes, served by libc calloc
since it is over pymalloc's 512-byte limit, plus an 8-byte list slot). Same work as
/work/shared/bench/anchor_workload.py, with the live counter of wlcommon.
usage: leak.py [--counter PATH] [--seconds S]
"""
import sys

import wlcommon
from wlcommon import churn

LEAK = []
LEAK_PAYLOAD = 1000


def leaky_function(i):
    LEAK.append(bytes(LEAK_PAYLOAD))


def main():
    h = wlcommon.Harness("leak", __doc__)
    publish = h.publish
    item = sys.getsizeof(bytes(LEAK_PAYLOAD)) + 8   # object + its slot in LEAK
    n = 0
    acc = 0
    leaked = 0
    while h.running:
        acc += churn(n)
        leaky_function(n)
        n += 1
        leaked += item
        publish(n, leaked)
    h.finish(n, leaked=leaked)


if __name__ == "__main__":
    main()
