"""e2e target for `record --events malloc`: native allocations made without the GIL, and a buffer
that grows by realloc, each in its own thread (usage: alloc_nogil.py TRUTH.json [LIFETIME_S]).

  mallocer: malloc_nogil() calls libc's malloc(100000) through ctypes (a CDLL call: ctypes releases
            the GIL around it, so the allocation happens while the thread holds no GIL) and never
            frees the block; COUNT calls;
  grower:   grow_bytearray() extends one bytearray by 32 KiB (CPython reallocs its buffer, over
            pymalloc's 512 bytes, so libc's realloc serves it); GROWS calls. The buffer's final
            allocated size (bytearray.__alloc__()) is what stays live.
Both allocate on the line holding their marker (NOGIL-LINE, GROW-LINE); the pointers go into a
list made beforehand and the bytearray starts empty (no buffer), so nothing else grows there.

Protocol: both threads start, warm up on their own scratch objects (freed again) and wait; then it
writes TRUTH.json (pid, the threads' native ids, the functions: name, file, allocating line) and
waits for a line on stdin. Then both threads run their calls paced over about WORK_S seconds;
then it writes TRUTH.json.done (each thread's exact allocations: the mallocer's count and size,
the grower's final buffer size; when the work started and ended, CLOCK_MONOTONIC) and sleeps,
keeping everything, until another line or EOF on stdin (or LIFETIME_S, default 60).
"""
import ctypes
import os
import sys
import threading
import time

import pmsgrowth

WORK_S = 1.5
COUNT, SIZE = 80, 100000
GROWS, CHUNK = 200, b"\x5a" * 32768
LIBC = ctypes.CDLL(None)
LIBC.malloc.restype = ctypes.c_void_p
LIBC.malloc.argtypes = [ctypes.c_size_t]
LIBC.free.restype = None
LIBC.free.argtypes = [ctypes.c_void_p]
PTRS = [0] * COUNT
BA = [bytearray()]


def malloc_nogil(i, n):
    PTRS[i] = LIBC.malloc(n)  # NOGIL-LINE


def grow_bytearray(ba):
    ba.extend(CHUNK)  # GROW-LINE


def paced(calls, fn, go, out):
    scratch = bytearray()
    for _ in range(3):  # warm-up (before go): scratch memory, freed again
        if fn is malloc_nogil:
            LIBC.free(LIBC.malloc(SIZE))
        else:
            grow_bytearray(scratch)
    del scratch
    out["tid"] = threading.get_native_id()
    out["ready"] = True
    go.wait()
    t0 = time.monotonic()
    for i in range(calls):
        fn(*(i, SIZE) if fn is malloc_nogil else (BA[0],))
        delay = t0 + (i + 1) * WORK_S / calls - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    out["started"], out["ended"] = t0, time.monotonic()


def main():
    if len(sys.argv) < 2:
        pmsgrowth.usage_exit(__doc__.split("\n\n")[0])
    truth_path = sys.argv[1]
    lifetime = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    go = threading.Event()
    res = {"mallocer": {}, "grower": {}}
    threads = [threading.Thread(target=paced, args=(COUNT, malloc_nogil, go, res["mallocer"]), name="mallocer"),
               threading.Thread(target=paced, args=(GROWS, grow_bytearray, go, res["grower"]), name="grower")]
    for t in threads:
        t.daemon = True
        t.start()
    while not all(r.get("ready") for r in res.values()):
        time.sleep(0.01)
    infos = {"mallocer": dict(pmsgrowth.func_info(malloc_nogil, "# NOGIL-LINE"), tid=res["mallocer"]["tid"]),
             "grower": dict(pmsgrowth.func_info(grow_bytearray, "# GROW-LINE"), tid=res["grower"]["tid"])}
    pmsgrowth.write_json(truth_path, {"pid": os.getpid(), "tid": threading.get_native_id(),
                                      "python": pmsgrowth.python_info(), "functions": infos})
    if not sys.stdin.readline():
        return
    go.set()
    for t in threads:
        t.join()
    if not all(PTRS):
        sys.stderr.write("malloc returned NULL\n")
        sys.exit(1)
    done = {"mallocer": {"live": COUNT * SIZE, "count": COUNT, "size": SIZE},
            "grower": {"live": BA[0].__alloc__(), "length": len(BA[0]), "count": GROWS}}
    for k in done:
        done[k].update(started=res[k]["started"], ended=res[k]["ended"])
    pmsgrowth.write_json(truth_path + ".done", done)
    sys.stdout.write("done\n")
    sys.stdout.flush()
    pmsgrowth.wait_stdin(lifetime)


if __name__ == "__main__":
    main()
