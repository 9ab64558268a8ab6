"""Small-object leak under small-object churn: leak_small() keeps a small tuple, list, int and
string per iteration in a global list (all served by pymalloc, sharing pools with the churn),
while churn_dicts() builds and drops about 150 small dicts, strings and ints per iteration.
Fresh pages are first touched by whoever allocates at the high-water mark, and the churn's peak
sits on top of what the leak holds: first-touch attribution (the growth source) is expected to
blame churn_dicts here. bench/attribution shows that bias rather than hiding it.
usage: smallleak.py [--counter PATH] [--seconds S]
"""
import sys

import wlcommon

LEAK = []


def leak_small(i):
    # every object kept here is created here (not `i` itself: main's counter made that one)
    LEAK.append(("key-%d" % i, [i + 1, i + 2]))


def churn_dicts(i):
    tmp = []
    for j in range(50):
        tmp.append({"i": i, "j": j, "name": "v-%d" % j})
    return len(tmp)


def item_size(i):
    key, lst = LEAK[-1]
    return (sys.getsizeof(LEAK[-1]) + sys.getsizeof(key) + sys.getsizeof(lst)
            + sys.getsizeof(lst[0]) + sys.getsizeof(lst[1]) + 8)


def main():
    h = wlcommon.Harness("smallleak", __doc__)
    publish = h.publish
    n = 0
    acc = 0
    leaked = 0
    size = 0
    while h.running:
        acc += churn_dicts(n)
        leak_small(n)
        if (n & 1023) == 0:
            size = item_size(n)     # grows by a byte or so with the digits of n
        n += 1
        leaked += size
        publish(n, leaked)
    h.finish(n, leaked=leaked)


if __name__ == "__main__":
    main()
