"""e2e target for `census`: a known population and one known growing holder
(usage: census_known.py READY_FILE [RATE] [LIFETIME_S]).

It builds N_INVOICES instances of its own class Invoice (each with a list of lines), N_RECORDS
small dicts in the list RECORDS, N_BLOBS bytes objects of 64 bytes in the list BLOBS
and N_TAGS strings in the set TAGS; then it takes its own view of the heap (counts by type:
every object gc.get_objects() returns, plus the untracked items one level below the exact
lists, tuples, dicts, sets and frozensets among them, counted once each: what census counts),
writes it with its pid to READY_FILE as JSON (atomically), and from then on appends RATE
instances of Entry per second (default 500) to the module-level list LEDGER, paced by the
clock, and nothing else. With LIFETIME_S it exits 0 after that many seconds. Python 3.8+
standard library only.
"""
import gc
import json
import os
import sys
import time

N_INVOICES = 20000
N_RECORDS = 15000
N_BLOBS = 10000
N_TAGS = 5000


class Invoice:
    def __init__(self, number):
        self.number = number
        self.lines = [number, number + 1]
        self.total = number * 1.5


class Entry:
    __slots__ = ("serial", "amount")

    def __init__(self, serial):
        self.serial = serial
        self.amount = serial * 0.25


INVOICES = [Invoice(i) for i in range(N_INVOICES)]
RECORDS = [{"id": i, "name": "record-%d" % i} for i in range(N_RECORDS)]
BLOBS = [(b"%08d" % i) * 8 for i in range(N_BLOBS)]
TAGS = {"tag-%d" % i for i in range(N_TAGS)}
LEDGER = []


def type_key(t):
    return "%s.%s" % (t.__module__, t.__qualname__)


def own_view():
    """Counts by type as census counts them, without creating what it counts (the helper
    containers here are not in the list it walks, and are dropped before the census)."""
    gc.collect()
    objs = gc.get_objects()
    counts = {}
    seen = set()
    for o in objs:
        k = type_key(type(o))
        counts[k] = counts.get(k, 0) + 1
    for o in objs:
        t = type(o)
        if t is list or t is tuple or t is set or t is frozenset:
            items = o
        elif t is dict:
            items = [x for kv in list(o.items()) for x in kv]
        else:
            continue
        for x in items:
            if gc.is_tracked(x) or id(x) in seen:
                continue
            seen.add(id(x))
            k = type_key(type(x))
            counts[k] = counts.get(k, 0) + 1
    del objs, seen
    return counts


def main():
    ready = sys.argv[1]
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 500.0
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else None
    view = {"pid": os.getpid(), "version": sys.version.split()[0], "rate": rate,
            "counts": own_view()}
    with open(ready + ".tmp", "w") as f:
        json.dump(view, f)
    os.rename(ready + ".tmp", ready)
    del view
    gc.collect()
    start = time.monotonic()
    serial = 0
    while lifetime is None or time.monotonic() - start < lifetime:
        due = int((time.monotonic() - start) * rate)
        while serial < due:
            LEDGER.append(Entry(serial))
            serial += 1
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
