"""e2e target for `record --events malloc --max-overhead`: allocates through libc's malloc at a steady
rate from its start, attached or not (usage: alloc_steady.py READY.json TIMELINE RATE [LIFETIME_S]).

Every 10 ms it makes and drops RATE/100 bytes(4000) objects (4033 bytes: over pymalloc's 512, so
each is one malloc() and one free() of libc's), paced by the clock: RATE allocations a second for
as long as the interpreter keeps up. After a warm-up it writes READY.json (pid, interpreter, rate)
and goes on until a line or EOF on stdin (or LIFETIME_S, default 60), then prints one JSON line
(allocations made, seconds, the worst lag behind the pace) and exits 0. The timeline (see
pmsgrowth.py) counts the allocations made, for the harness to see the target kept working.
Python 3.8+ standard library only.
"""
import json
import os
import sys
import threading
import time

import pmsgrowth

TICK = 0.01
SIZE = 4000


def churn_malloc(n):
    for _ in range(n):
        b = bytes(SIZE)  # CHURN-LINE
    return b


def main():
    if len(sys.argv) < 4:
        pmsgrowth.usage_exit(__doc__.split("\n\n")[0])
    ready, timeline, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    per_tick = max(1, int(rate * TICK))
    progress = pmsgrowth.Progress()
    pmsgrowth.Timeline(timeline, progress).start()
    for _ in range(20):
        churn_malloc(per_tick)
    waiter = threading.Thread(target=sys.stdin.readline, daemon=True)
    waiter.start()
    pmsgrowth.write_json(ready, {"pid": os.getpid(), "tid": threading.get_native_id(),
                                 "python": pmsgrowth.python_info(), "rate": per_tick / TICK})
    t0 = time.monotonic()
    end = t0 + lifetime
    ticks, lag = 0, 0.0
    while waiter.is_alive() and time.monotonic() < end:
        churn_malloc(per_tick)
        progress.n += per_tick
        ticks += 1
        delay = t0 + ticks * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            lag = max(lag, -delay)
    sys.stdout.write(json.dumps({"allocations": progress.n, "seconds": time.monotonic() - t0,
                                 "max_lag": lag}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
