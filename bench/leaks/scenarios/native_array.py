"""native_array: a native buffer that only grows (array.array and bytearray).

A metrics recorder appends every sample to an array.array('d') of values and a bytearray
journal of text lines, meant to be flushed to disk by a job that was never scheduled. Both are
single native buffers grown by realloc (beyond 128 KB: mremap), not many objects: the memory
becomes resident as it is written, by the appends.

Truth: leaks from record_sample (both appends), 25 KB/s by default.
"""
import array

import leakcommon as lc

SAMPLES = array.array("d")
JOURNAL = bytearray()


def record_sample(t, value):
    SAMPLES.append(value)
    JOURNAL.extend(b"%.6f cpu=%.4f mem=%.1f\n" % (t, value, value * 1024.0))


def main():
    sc = lc.Scenario("native_array", "array.array and bytearray buffers that only grow",
                     leaking=True, functions=["record_sample"], rate=25 * lc.KB)
    state = {"n": 0}

    def tick(sc, now):
        while sc.behind(now):
            n = state["n"]
            record_sample(now, (n * 7 % 1000) / 10.0)
            state["n"] = n + 1

    # what is written (resident as it is written), not the capacity realloc reserved ahead
    sc.run(tick, held=lambda: len(SAMPLES) * SAMPLES.itemsize + len(JOURNAL))


if __name__ == "__main__":
    main()
