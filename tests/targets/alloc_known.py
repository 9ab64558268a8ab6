"""e2e target for `record --events malloc|pymalloc`: allocations of known sizes from known functions
(usage: alloc_known.py TRUTH.json MODE [LIFETIME_S]; MODE is malloc, pymalloc or tailcalls).

  malloc:   keep_big() keeps one bytes(4000) object (4033 bytes: over pymalloc's 512, so libc's
            malloc serves it) per call; churn_big() makes and drops bytes objects of 1000, 3000,
            6000 and 10000 bytes (about 20 KB allocated and freed per call);
  pymalloc: keep_small() keeps one bytes(100) object (133 bytes: a pymalloc block) per call;
            churn_small() makes and drops bytes objects of 50, 150 and 300 bytes; churn_dicts()
            makes and drops two small dicts (their exact allocations depend on the version: only
            "nothing stays" is known about them);
  tailcalls: keep_tail() keeps libc's realloc(NULL, 4000) (glibc's realloc jumps to malloc: one
            allocation, two probed entries) per call; churn_tail() frees what reallocarray(NULL, 1,
            n) gave for n of 1000, 3000, 6000 and 10000 (reallocarray jumps to realloc, which jumps
            to malloc: three entries). Each allocation must count once.
Every function allocates on the line that holds its marker comment (KEEP-LINE, CHURN-LINE,
DICT-LINE); the objects are bytes objects (no free list, no GC header), so each is one allocation
of exactly sys.getsizeof() bytes (what the allocator is asked for; a debug build's hooks add their
own bytes when they call malloc). The kept objects go into a list made before the work, so no
list grows during it.

Protocol: after a warm-up (every function called a few times, everything it kept dropped) it writes
TRUTH.json (pid, tid, interpreter, the functions: name, file, allocating line) and waits for a line
on stdin. Then it runs COUNT rounds paced over about WORK_S seconds (one round: keep once, churn
once), writes TRUTH.json.done with the exact counts and bytes each function allocated, kept and
freed during the rounds, the stack of each function's calls there (innermost first), when the rounds
started and ended (CLOCK_MONOTONIC), and sleeps, keeping what it kept, until another line or EOF on
stdin (or LIFETIME_S, default 60). So the harness starts `record`, waits until it is attached, says go, and
knows exactly what the recording should have seen.
"""
import os
import sys
import threading
import time

import pmsgrowth
import pmstruth

WORK_S = 2.0
TICK = 0.01
MODES = {
    # count of rounds, kept size, churned sizes
    "malloc": (8000, 4000, (1000, 3000, 6000, 10000)),
    "pymalloc": (20000, 100, (50, 150, 300)),
    "tailcalls": (8000, 4000, (1000, 3000, 6000, 10000)),
}
LIBC = None
KEPT = []
_stacks = {}


def keep_big(i, n):
    KEPT[i] = bytes(n)  # KEEP-LINE


def churn_big(sizes):
    for n in sizes:
        b = bytes(n)  # CHURN-LINE
    return b


def keep_small(i, n):
    KEPT[i] = bytes(n)  # KEEP-LINE


def churn_small(sizes):
    for n in sizes:
        b = bytes(n)  # CHURN-LINE
    return b


def keep_tail(i, n):
    KEPT[i] = LIBC.realloc(None, n)  # KEEP-LINE


def churn_tail(sizes):
    for n in sizes:
        LIBC.free(LIBC.reallocarray(None, 1, n))  # CHURN-LINE


def churn_dicts(i):
    d = {"i": i, "j": -i}; e = dict(d, k=i)  # DICT-LINE  (noqa: E702)
    return len(e)


def _probe(name, frame, info):
    """Called on the line that calls the function: the stack of that call, innermost first."""
    if name not in _stacks:
        _stacks[name] = [{"function": info["function"], "name": info["function"].rsplit(".", 1)[-1],
                          "file": info["file"], "line": info["line"]}] + pmstruth.frames_of(frame)


def work(keep, churn, extra, count, size, sizes, infos, first):
    """`count` rounds from KEPT[first]; about TICK s per batch so that they take about WORK_S."""
    per_tick = max(1, int(count * TICK / WORK_S))
    t0 = time.monotonic()
    i = 0
    ticks = 0
    while i < count:
        end = min(count, i + per_tick)
        while i < end:
            keep(first + i, size); _probe("keep", sys._getframe(), infos["keep"])  # noqa: E702
            churn(sizes); _probe("churn", sys._getframe(), infos["churn"])  # noqa: E702
            if extra is not None:
                extra(i); _probe("extra", sys._getframe(), infos["extra"])  # noqa: E702
            i += 1
        ticks += 1
        delay = t0 + ticks * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return t0, time.monotonic()


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in MODES:
        pmsgrowth.usage_exit(__doc__.split("\n\n")[0])
    truth_path = sys.argv[1]
    mode = sys.argv[2]
    lifetime = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    count, size, sizes = MODES[mode]
    if mode == "malloc":
        keep, churn, extra = keep_big, churn_big, None
    elif mode == "tailcalls":
        global LIBC
        import ctypes
        LIBC = ctypes.CDLL("libc.so.6")
        LIBC.realloc.restype = ctypes.c_void_p
        LIBC.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        LIBC.reallocarray.restype = ctypes.c_void_p
        LIBC.reallocarray.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
        LIBC.free.argtypes = [ctypes.c_void_p]
        keep, churn, extra = keep_tail, churn_tail, None
    else:
        keep, churn, extra = keep_small, churn_small, churn_dicts
    infos = {"keep": pmsgrowth.func_info(keep, "# KEEP-LINE"),
             "churn": pmsgrowth.func_info(churn, "# CHURN-LINE")}
    if extra is not None:
        infos["extra"] = pmsgrowth.func_info(extra, "# DICT-LINE")
    warm = 50
    KEPT.extend([None] * (count + warm))
    work(keep, churn, extra, warm, size, sizes, infos, count)  # warm-up: first calls, specialization
    for i in range(count, count + warm):
        if mode == "tailcalls":
            LIBC.free(KEPT[i])
        KEPT[i] = None
    # what the allocator is asked for: the object's size, or the C call's argument
    native = mode == "tailcalls"
    obj_size = size if native else sys.getsizeof(bytes(size))
    churn_sizes = list(sizes) if native else [sys.getsizeof(bytes(n)) for n in sizes]
    _stacks.clear()  # the stacks of the calls during the work (their caller's line differs)
    pmsgrowth.write_json(truth_path, {
        "pid": os.getpid(), "tid": threading.get_native_id(), "python": pmsgrowth.python_info(),
        "mode": mode, "functions": infos, "count": count, "keep_size": obj_size, "churn_sizes": churn_sizes})
    line = sys.stdin.readline()
    if not line:
        return
    t0, t1 = work(keep, churn, extra, count, size, sizes, infos, 0)
    kept = count * obj_size if native else sum(sys.getsizeof(KEPT[i]) for i in range(count))
    churned = count * sum(churn_sizes)
    pmsgrowth.write_json(truth_path + ".done", {
        "started": t0, "ended": t1, "count": count,
        "keep": {"allocated": kept, "live": kept, "sizes": [[obj_size, count]]},
        "churn": {"allocated": churned, "live": 0, "sizes": [[s, count] for s in churn_sizes]},
        "stacks": _stacks})
    sys.stdout.write("done: %d rounds in %.2fs\n" % (count, t1 - t0))
    sys.stdout.flush()
    pmsgrowth.wait_stdin(lifetime)


if __name__ == "__main__":
    main()
