"""Deterministic allocation workload of bench/accuracy: known mixes of sizes at known lines.

Every iteration calls the site functions below. Each allocates on exactly one line (marked
`# SITE`), with sizes taken from fixed tables, so the bytes and objects every line allocates over
N iterations are known exactly (the `expected` table: sizes measured once with sys.getsizeof, which
is the allocator's request for bytes, str and a bytearray's buffer, none of them tracked by the GC):

  parse_small    200 small bytes per iteration (49-473 B): pymalloc only, freed at once
  encode_medium  16 bytes of 633-3533 B (malloc), freed at once
  load_blocks    1 zero-filled block per iteration, 16-200 KiB in turn (calloc), freed at once
  frame_buffers  4 bytearray buffers of 1-8 KB (realloc(NULL, n) + a 56 B pymalloc header)
  new_buffer     6 bytearray of 1-3 KB (header + buffer) that grow_buffers then grows:
  grow_buffers   `buf += CHUNK` (500 B): realloc of that buffer to 1.5-3.5 KB, freed at once
  format_mixed   10 str straddling pymalloc's 512 B limit (341, 501, 941, 2041 B on 3.12)
  cache_put      8 bytes of 733-1833 B into a ring of 3000 slots: the ring keeps the last 375
                 iterations, older entries are freed when their slot is reused (live plateaus)
  leak_records   5 bytes of 1033-1433 B per iteration kept to the end (live = allocated)

A realloc counts as an allocation of its new size at the line that calls it (the old block is
freed at its own line). Only requests over 512 bytes reach libc (`malloc` events); every request goes through CPython's
allocator functions (`pymalloc` events). The workload allocates nothing else per iteration except
a few ints and floats (pacing, counter) on other lines.

Modes:
  --mode run    setup, then wait for the go flag in the control file (--control PATH, 4 native
                u64: iterations done, state 1 ready / 2 running / 3 done, go flag, spare), run
                --iterations at --pace iterations per second, publish the count after each one,
                then idle (allocating nothing) until SIGTERM.
  --mode truth  in-process ground truth with tracemalloc (1 frame): run --iterations unpaced
                between two snapshots (live bytes and objects per line, split at 512 B), then an
                audit of --audit iterations that keeps every object (tracemalloc's live bytes per
                line then = allocated bytes: checks the `expected` table); JSON to --out.
"""
import argparse
import json
import mmap
import os
import signal
import struct
import sys
import time

PYMALLOC_LIMIT = 512            # larger requests go to PyMem_RawMalloc, i.e. libc
RING_SLOTS = 3000               # cache_put's ring
Z = b"\0"
A = "a"

SMALL = [16 + (j * 131) % 425 for j in range(200)]          # + 33 B: 49..473 B
MEDIUM = [600 + (j * 577) % 2901 for j in range(16)]         # + 33 B: 633..3533 B
BLOCKS = [16384, 49152, 102400, 204800]                      # + 33 B, one per iteration in turn
BUFFERS = [1000 + (j * 2333) % 7001 for j in range(4)]       # + 1 B buffer, + 56 B header
MIXED = [300, 460, 900, 2000, 300, 900, 460, 2000, 900, 2000]  # + 41 B (str header, 3.12)
GROWN = [1000 + (j * 613) % 2001 for j in range(6)]          # + 1 B buffer, + 56 B header
CHUNK = b"\1" * 500                                         # appended: buffer realloc'd to + 500
CACHED = [700 + (j * 389) % 1101 for j in range(8)]          # + 33 B
LEAKED = [1000 + (j * 211) % 401 for j in range(5)]          # + 33 B

RING = [None] * RING_SLOTS
KEEP = []
sink = bool                     # consumes a temporary without allocating; list.append in the audit


def parse_small():
    for n in SMALL:
        x = Z * n  # SITE
        sink(x)


def encode_medium():
    for n in MEDIUM:
        x = Z * n  # SITE
        sink(x)


def load_blocks(i):
    n = BLOCKS[i % 4]
    x = bytes(n)  # SITE
    sink(x)


def frame_buffers():
    for n in BUFFERS:
        x = bytearray(n)  # SITE
        sink(x)


def new_buffer(n):
    return bytearray(n)  # SITE


def grow_buffers():
    for n in GROWN:
        x = new_buffer(n)
        x += CHUNK  # SITE
        sink(x)


def format_mixed():
    for n in MIXED:
        x = A * n  # SITE
        sink(x)


def cache_put(slot):
    for n in CACHED:
        k = slot % RING_SLOTS
        RING[k] = Z * n  # SITE
        slot += 1
    return slot


def leak_records(slot):
    for n in LEAKED:
        KEEP[slot] = Z * n  # SITE
        slot += 1
    return slot


def site_lines():
    """{function name: line of its `# SITE` line}, read from this file."""
    out = {}
    func = None
    with open(os.path.abspath(__file__)) as f:
        for no, line in enumerate(f, 1):
            if line.startswith("def "):
                func = line[4:line.index("(")]
            elif line.rstrip().endswith("# SITE"):
                out[func] = no
    return out


def expected(iterations, audit=False):
    """{function: {"malloc": [bytes, objects], "pymalloc": [bytes, objects]}} that the site lines
    request from the allocators over `iterations` iterations. With audit, what tracemalloc shows
    per line when every object is kept: a realloc'd block is traced at the line of the realloc
    only."""
    e = {}

    def add(func, size, times):
        d = e.setdefault(func, {"malloc": [0, 0], "pymalloc": [0, 0]})
        for view in (("malloc", "pymalloc") if size > PYMALLOC_LIMIT else ("pymalloc",)):
            d[view][0] += size * times
            d[view][1] += times

    for n in SMALL:
        add("parse_small", sys.getsizeof(Z * n), iterations)
    for n in MEDIUM:
        add("encode_medium", sys.getsizeof(Z * n), iterations)
    for k, n in enumerate(BLOCKS):
        add("load_blocks", sys.getsizeof(bytes(n)), len(range(k, iterations, 4)))
    header = sys.getsizeof(bytearray())
    for n in BUFFERS:
        add("frame_buffers", header, iterations)
        add("frame_buffers", sys.getsizeof(bytearray(n)) - header, iterations)
    for n in GROWN:
        add("new_buffer", header, iterations)
        b = bytearray(n)
        if not audit:
            add("new_buffer", sys.getsizeof(b) - header, iterations)
        b += CHUNK
        add("grow_buffers", sys.getsizeof(b) - header, iterations)
    for n in MIXED:
        add("format_mixed", sys.getsizeof(A * n), iterations)
    for n in CACHED:
        add("cache_put", sys.getsizeof(Z * n), iterations)
    for n in LEAKED:
        add("leak_records", sys.getsizeof(Z * n), iterations)
    return e


def expected_live(iterations):
    """Live bytes/objects at the end of `iterations` run-mode iterations (nothing else survives)."""
    e = {}
    kept = min(iterations * len(CACHED), RING_SLOTS)     # the last `kept` ring entries
    seq = [CACHED[j % len(CACHED)] for j in range(iterations * len(CACHED) - kept, iterations * len(CACHED))]
    for func, sizes in (("cache_put", seq), ("leak_records", LEAKED * iterations)):
        d = e.setdefault(func, {"malloc": [0, 0], "pymalloc": [0, 0]})
        for n in sizes:
            size = sys.getsizeof(Z * n)
            for view in (("malloc", "pymalloc") if size > PYMALLOC_LIMIT else ("pymalloc",)):
                d[view][0] += size
                d[view][1] += 1
    return e


def iteration(i, cslot, kslot):
    parse_small()
    encode_medium()
    load_blocks(i)
    frame_buffers()
    grow_buffers()
    format_mixed()
    cslot = cache_put(cslot)
    kslot = leak_records(kslot)
    return cslot, kslot


def per_line(snapshot, lines):
    """{function: {"malloc": [bytes, objects], "pymalloc": [...]}} of the snapshot's traces at
    the site lines (first frame)."""
    me = os.path.abspath(__file__)
    by_line = {no: f for f, no in lines.items()}
    out = {f: {"malloc": [0, 0], "pymalloc": [0, 0]} for f in lines}
    for t in snapshot.traces:
        fr = t.traceback[0]
        if fr.lineno in by_line and os.path.abspath(fr.filename) == me:
            d = out[by_line[fr.lineno]]
            for view in (("malloc", "pymalloc") if t.size > PYMALLOC_LIMIT else ("pymalloc",)):
                d[view][0] += t.size
                d[view][1] += 1
    return out


def truth(a):
    global sink, RING
    import tracemalloc
    lines = site_lines()
    exp, exp_live = expected(a.iterations), expected_live(a.iterations)
    KEEP[:] = [None] * (a.iterations * len(LEAKED))
    tracemalloc.start(1)
    s0 = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    cslot = kslot = 0
    for i in range(a.iterations):
        cslot, kslot = iteration(i, cslot, kslot)
    secs = time.perf_counter() - t0
    s1 = tracemalloc.take_snapshot()
    live_before = per_line(s0, lines)
    live = per_line(s1, lines)
    # audit: keep everything, so that tracemalloc's live bytes per line are the allocated bytes
    RING[:] = [None] * RING_SLOTS
    KEEP[:] = [None] * (a.audit * len(LEAKED))
    kept = []
    sink = kept.append
    RING = [None] * (a.audit * len(CACHED) + 1)     # no slot reused: nothing freed
    globals()["RING_SLOTS"] = len(RING)
    s2 = tracemalloc.take_snapshot()
    a0 = per_line(s2, lines)
    cslot = kslot = 0
    for i in range(a.audit):
        cslot, kslot = iteration(i, cslot, kslot)
    s3 = tracemalloc.take_snapshot()
    a1 = per_line(s3, lines)
    tracemalloc.stop()
    audit = {f: {v: [a1[f][v][0] - a0[f][v][0], a1[f][v][1] - a0[f][v][1]] for v in a1[f]} for f in a1}
    doc = {"python": "%d.%d.%d" % sys.version_info[:3], "file": os.path.abspath(__file__),
           "iterations": a.iterations, "audit_iterations": a.audit, "seconds": secs,
           "lines": lines, "expected": exp, "expected_live": exp_live,
           "audit": audit, "audit_expected": expected(a.audit, audit=True), "live": live, "live_before": live_before}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


def run(a):
    fd = os.open(a.control, os.O_RDWR)
    mm = mmap.mmap(fd, mmap.PAGESIZE)
    os.close(fd)
    st = struct.Struct("@QQQQ")
    running = [True]

    def stop(signum, frame):
        running[0] = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    KEEP[:] = [None] * (a.iterations * len(LEAKED))
    st.pack_into(mm, 0, 0, 1, 0, 0)                  # ready
    while running[0] and st.unpack_from(mm, 0)[2] == 0:
        time.sleep(0.005)
    st.pack_into(mm, 0, 0, 2, 1, 0)                  # running
    pack = struct.Struct("@Q").pack_into
    period = 1.0 / a.pace if a.pace > 0 else 0.0
    t0 = time.monotonic()
    cslot = kslot = 0
    i = 0
    while running[0] and i < a.iterations:
        cslot, kslot = iteration(i, cslot, kslot)
        i += 1
        pack(mm, 0, i)
        if period:
            d = t0 + i * period - time.monotonic()
            if d > 0:
                time.sleep(d)
    secs = time.monotonic() - t0
    st.pack_into(mm, 0, i, 3, 1, 0)                  # done
    while running[0]:
        time.sleep(0.05)
    print("RESULT workload=accuracy py=%d.%d.%d iters=%d secs=%.3f" % (sys.version_info[:3] + (i, secs)),
          flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("run", "truth", "expected"), default="run")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--pace", type=float, default=200.0, help="iterations per second (0: unpaced)")
    p.add_argument("--control", help="run mode: the control file (4 native u64)")
    p.add_argument("--audit", type=int, default=200, help="truth mode: audit iterations")
    p.add_argument("--out", help="truth mode: JSON output")
    a = p.parse_args()
    if a.mode == "truth":
        truth(a)
    elif a.mode == "expected":
        json.dump({"lines": site_lines(), "expected": expected(a.iterations),
                   "expected_live": expected_live(a.iterations)}, sys.stdout, indent=1)
    else:
        run(a)


if __name__ == "__main__":
    main()
