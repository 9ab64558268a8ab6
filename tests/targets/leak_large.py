"""e2e target for `record`: leak() keeps a 64 KiB bytes object every 20 ms (about 3.2 MB/s) in a
global list while churn() makes and drops thousands of small objects
(usage: leak_large.py TRUTH.json TIMELINE [LIFETIME_S] [thread|heapchurn]).

With "thread", the paced leak/churn loop runs in a second Python thread ("leaker") while the main
thread churns too, so the growth must be charged to the right one of two Python threads.
With "heapchurn", churn_heap() replaces churn(): it also drops a 16 KB list (C heap) every call, and
first touches of heap pages are then shared between the leak and the churn (the growth source's
known bias: memory first touched by one function is later held by another).

Each kept object is malloc'ed by the interpreter (larger than pymalloc's 512 bytes) and filled by
the repetition, so its pages are first touched inside leak(), on the LEAK-LINE. See pmsgrowth.py
for the truth file and the RSS timeline.
"""
import sys

import pmsgrowth

CHUNK = 64 * 1024
PERIOD = 0.02
KEPT = []


def leak():
    KEPT.append(b"\x5a" * CHUNK)  # LEAK-LINE


def churn_heap():
    """Like pmsgrowth.churn(), but each call also makes and drops one 16 KB list (2000 pointers): that is
    malloc'ed from the same C heap as the leak, so pages it touches first get reused by the leak."""
    items = [{"i": i, "s": "k%d" % i, "t": (i, i + 1)} for i in range(2000)]
    total = 0
    for d in items:
        total += d["t"][1] + len(d["s"])
    return total


def main():
    truth, timeline, lifetime, mode = pmsgrowth.parse_args(sys.argv, __doc__.split("\n\n")[0])
    args = (leak, pmsgrowth.churn, PERIOD, truth, timeline, lifetime)
    extra = {"target": "leak_large", "chunk": CHUNK, "mode": mode or "main"}
    if mode is None:
        pmsgrowth.run(*args, extra=extra)
    elif mode == "heapchurn":
        pmsgrowth.run(leak, churn_heap, *args[2:], extra=extra)
    elif mode == "thread":
        pmsgrowth.run_in_thread(args, extra, pmsgrowth.churn)
    else:
        pmsgrowth.usage_exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
