"""thread_pool_state: per-thread state in a thread pool that is never cleared.

Tasks run in a pool of 4 worker threads (concurrent.futures.ThreadPoolExecutor). Each worker
keeps a "recently seen records" list in a threading.local() to skip duplicates, appends every
record it encodes and never trims it: the pool's threads live for ever, so does their state.
A record is ~1.6 KB of bytes (memory of its own). The growth happens in the worker threads, not
in the main thread that submits the tasks.

Truth: leaks from encode_record (the bytes kept; the line that allocates them) and handle_task
(the per-thread list), 100 KB/s by default.
"""
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import leakcommon as lc

WORKERS = 4
_local = threading.local()
_slots = []                 # per worker: [bytes kept, the list], each written by its own thread
_slots_lock = threading.Lock()


def encode_record(n):
    return (b"%010d;" % n) * 150                    # 1650 bytes


def handle_task(n):
    seen = getattr(_local, "seen", None)
    if seen is None:
        seen = _local.seen = []
        slot = _local.slot = [0, seen]
        with _slots_lock:
            _slots.append(slot)
    rec = encode_record(n)
    if rec not in seen[-8:]:
        seen.append(rec)
        _local.slot[0] += lc.obj_cost(rec)
    return len(rec)


def main():
    sc = lc.Scenario("thread_pool_state", "per-thread state in a thread pool, never cleared",
                     leaking=True, functions=["encode_record", "handle_task"], rate=100 * lc.KB)
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="worker")
    # all workers started before the timed part (a pool that has been serving for a while)
    for f in [pool.submit(time.sleep, 0.2) for _ in range(WORKERS)]:
        f.result()
    per_task = lc.obj_cost(encode_record(0))
    state = {"n": 0, "pending": []}

    def kept_by_workers():
        with _slots_lock:
            return sum(s[0] + lc.block_cost(sys.getsizeof(s[1])) for s in _slots)

    def tick(sc, now):
        # what is submitted but not yet run counts as kept, so the pace does not overshoot
        state["pending"] = [f for f in state["pending"] if not f.done()]
        while sc.total() + len(state["pending"]) * per_task < sc.args.rate * (now - sc.t0):
            state["pending"].append(pool.submit(handle_task, state["n"]))
            state["n"] += 1

    sc.run(tick, held=kept_by_workers)
    pool.shutdown(wait=False)


if __name__ == "__main__":
    main()
