"""e2e target for record files: leak() keeps a 64 KiB bytes object every PERIOD seconds (default
20 ms: about 3.2 MB/s) in a global list while churn() makes and drops small objects, like
leak_large.py, but at the pace given on the command line; optionally it also spreads growth over
many sites with long names (usage: leak_paced.py TRUTH.json TIMELINE [LIFETIME_S] [PERIOD_S]
[SPREAD_TRIGGER]).

Two runs with different PERIODs leak at different rates from the same site (function, file, line):
what `pymemspy report --diff` compares. With SPREAD_TRIGGER (a path), once that file exists every
leak() call also calls SPREAD_PER_CALL of SPREAD_SITES generated functions (in turn), each of which
keeps a 16 KiB bytes object: SPREAD_SITES more sites, each named by a function of about 400
characters, so a recording of it writes several KB of names, sites and stacks within a second (the
record file outgrows a nearly full disk; a larger file to cut). The trigger is polled once per
leak() call. See pmsgrowth.py for the truth file and the RSS timeline.
"""
import os
import sys

import pmsgrowth

CHUNK = 64 * 1024
SPREAD_CHUNK = 16 * 1024
SPREAD_SITES = 40
SPREAD_PER_CALL = 2
KEPT = []
SPREAD = []
_state = {"trigger": None, "on": False, "next": 0}


def _make_spread():
    src = []
    for i in range(SPREAD_SITES):
        name = "spread_%02d_%s" % (i, "w" * 390)
        src.append("def %s(kept):\n    kept.append(b'\\x33' * %d)\n" % (name, SPREAD_CHUNK))
    ns = {}
    exec(compile("".join(src), "<leak_paced spread>", "exec"), ns)
    return [ns[k] for k in sorted(ns) if k.startswith("spread_")]


def spread():
    n = _state["next"]
    for k in range(SPREAD_PER_CALL):
        SPREAD[(n + k) % len(SPREAD)](KEPT)
    _state["next"] = (n + SPREAD_PER_CALL) % len(SPREAD)


def leak():
    KEPT.append(b"\x5a" * CHUNK)  # LEAK-LINE
    if _state["on"]:
        spread()
    elif _state["trigger"] is not None and os.path.exists(_state["trigger"]):
        _state["on"] = True


def main():
    usage = __doc__.split("\n\n")[0]
    argv = sys.argv
    truth, timeline, lifetime, _ = pmsgrowth.parse_args(argv[:4], usage)
    period = float(argv[4]) if len(argv) > 4 else 0.02
    if len(argv) > 5:
        _state["trigger"] = os.path.abspath(argv[5])
        SPREAD.extend(_make_spread())
    if not 0.001 <= period <= 10:
        pmsgrowth.usage_exit("PERIOD_S must be from 0.001 to 10")
    pmsgrowth.run(leak, pmsgrowth.churn, period, truth, timeline, lifetime,
                  extra={"target": "leak_paced", "chunk": CHUNK, "spread_sites": len(SPREAD),
                         "spread_trigger": _state["trigger"]})


if __name__ == "__main__":
    main()
