"""slow_leak_churn: a slow leak of 10 KB/s under 50 MB/s of churn.

A media service transcodes chunks in a worker thread: each 1 MiB chunk is written into a fresh
anonymous mapping (mmap), processed and unmapped: 50 MB/s of memory that becomes resident and
is given back to the kernel (page faults and munmap: churn the growth source sees, ~12,800
pages a second, far above pymemspy's default stack-walk budget of 2000/s). Meanwhile the request
thread remembers every session's 1000-byte token blob in a module-level dict that is never
pruned: 10 KB/s, 0.02% of the churn.

Truth: leaks from remember_session (the blob, the key and the dict; the line that allocates the
blob), 10 KB/s by default (--churn-mb sets the churn, default 50).
"""
import mmap
import sys
import time

import leakcommon as lc

SESSIONS = {}
CHUNK = 1024 * 1024


def remember_session(sid):
    SESSIONS["s%d" % sid] = b"%012d" % sid * 83 + b"....."        # 1001 bytes


def transcode_chunk(src):
    m = mmap.mmap(-1, CHUNK)
    m.write(src)
    total = m[0] + m[CHUNK // 2] + m[CHUNK - 1]
    m.close()
    return total


def transcoder(stop, mb_per_s):
    src = bytes(range(256)) * (CHUNK // 256)
    period = CHUNK / (mb_per_s * 1e6)
    nxt = time.monotonic()
    while not stop.is_set():
        transcode_chunk(src)
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            nxt = time.monotonic()


def main():
    def extra(p):
        p.add_argument("--churn-mb", type=float, default=50.0,
                       help="MB (10^6 bytes) per second mapped, written and unmapped (default 50)")
    sc = lc.Scenario("slow_leak_churn", "a slow leak (10 KB/s) under 50 MB/s of churn",
                     leaking=True, functions=["remember_session"], rate=10 * lc.KB,
                     extra_args=extra)
    per_session = lc.calibrate(lambda i: (remember_session(i), SESSIONS.popitem())[1])
    per_session -= lc.obj_cost((None, None))
    SESSIONS.clear()
    base = lc.block_cost(sys.getsizeof(SESSIONS))
    if sc.args.churn_mb > 0:
        sc.start_thread(transcoder, sc.stopping(), sc.args.churn_mb, name="transcoder")
    state = {"sid": 0}

    def tick(sc, now):
        while sc.behind(now):
            remember_session(state["sid"])
            state["sid"] += 1
            sc.kept += per_session

    sc.run(tick, held=lambda: lc.block_cost(sys.getsizeof(SESSIONS)) - base)


if __name__ == "__main__":
    main()
