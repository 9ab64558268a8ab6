"""Steady churn: about 400 short-lived objects per iteration and no net growth.

The case a production service spends most of its life in: the profiler must cost next to nothing
here (resident memory does not grow, so the growth source sees almost no events).
usage: steady.py [--counter PATH] [--seconds S]
"""
import wlcommon
from wlcommon import churn


def main():
    h = wlcommon.Harness("steady", __doc__)
    publish = h.publish
    n = 0
    acc = 0
    while h.running:
        acc += churn(n)
        n += 1
        publish(n)
    h.finish(n)


if __name__ == "__main__":
    main()
