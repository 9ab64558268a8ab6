"""e2e target for `record --events survivors`: leak() keeps 150 small objects (a short string and a
tuple holding it and an int, all under 512 bytes: pymalloc's pools) every 20 ms in a global list,
while churn() makes and drops small dicts, strings and ints of the same size classes
(usage: leak_small.py TRUTH.json TIMELINE [LIFETIME_S] [thread]).

This is the case first-touch attribution gets wrong: the leak and the churn share pools, and the
fresh pages are mostly touched by the churn, which allocates at the high-water mark. With
"thread", the paced leak/churn loop runs in a second Python thread ("leaker") while the main
thread and a third one churn too.

See pmsgrowth.py for the truth file and the RSS timeline.
"""
import sys

import pmsgrowth

PERIOD = 0.02
PER_CALL = 150
KEPT = []
_calls = [0]


def leak():
    n = _calls[0] = _calls[0] + 1
    for i in range(PER_CALL):
        KEPT.append(("leak-%d-%d" % (n, i), n * 100000 + i))  # LEAK-LINE


def churn():
    """About 200 small objects made and dropped: dicts, strings like the leak's, big ints. The
    list stays small too (40 slots: under 512 bytes even with a debug build's padding), so that
    all the churn lives in pymalloc's pools, as the leak does."""
    total = 0
    items = []
    for i in range(40):
        items.append({"i": i, "name": "item-%d-%d" % (i, total), "v": i * 100003})
    for d in items:
        total += len(d["name"]) + d["v"] % 7
    return total


def main():
    truth, timeline, lifetime, mode = pmsgrowth.parse_args(sys.argv, __doc__.split("\n\n")[0])
    args = (leak, churn, PERIOD, truth, timeline, lifetime)
    extra = {"target": "leak_small", "chunk": 0, "mode": mode or "main"}
    if mode is None:
        pmsgrowth.run(*args, extra=extra)
    elif mode == "thread":
        pmsgrowth.run_in_thread(args, extra, churn, churners=1)
    else:
        pmsgrowth.usage_exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
