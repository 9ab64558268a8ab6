"""constant_large: large but constant memory (must NOT be flagged).

An in-memory store holds 160 MB of 4 MiB segments (anonymous mappings, as a shared-memory or
arrow-like buffer pool would) and an index dict of 100,000 small entries, all built before
the recording starts. While recorded it keeps rewriting itself without growing: every 100 ms
one segment is replaced by a fresh one (mapped, filled, swapped in; the old one unmapped:
40 MB/s becoming resident and 40 MB/s given back), 2,000 index entries a second are replaced
(oldest out, a new one in; the dict's table is rebuilt at the same size now and then), and
pages of the other segments are rewritten in place.

Truth: not leaking. The truth file's samples are what the store holds (for information).
"""
import mmap

import leakcommon as lc

SEGMENT = 4 * 1024 * 1024
SEGMENTS = 40
INDEX_SIZE = 100000
SEGS = []
INDEX = {}


def new_segment(tag):
    m = mmap.mmap(-1, SEGMENT)
    m.write(bytes([tag & 0xFF]) * SEGMENT)
    return m


def replace_segment(k, tag):
    fresh = new_segment(tag)
    old, SEGS[k] = SEGS[k], fresh
    old.close()


def rotate_index(first, count):
    for key in range(first, first + count):
        del INDEX["key-%d" % key]
        INDEX["key-%d" % (key + INDEX_SIZE)] = ("value-%d" % key, key)


def touch_segments(n):
    seg = SEGS[n % SEGMENTS]
    for off in range((n * 4096) % SEGMENT, SEGMENT, 64 * 4096):
        seg[off] = n & 0xFF


def main():
    sc = lc.Scenario("constant_large", "large but constant memory", leaking=False, functions=[],
                     rate=0)
    for k in range(SEGMENTS):
        SEGS.append(new_segment(k))
    for key in range(INDEX_SIZE):
        INDEX["key-%d" % key] = ("value-%d" % key, key)
    state = {"n": 0, "oldest": 0}

    def tick(sc, now):
        n = state["n"]
        if n % 10 == 0:
            replace_segment(n // 10 % SEGMENTS, n)
        rotate_index(state["oldest"], 20)
        state["oldest"] += 20
        touch_segments(n)
        state["n"] = n + 1

    sc.run(tick, held=lambda: SEGMENTS * SEGMENT)


if __name__ == "__main__":
    main()
