"""native_ctypes: growth in native memory, outside any Python object.

A wrapper around a C decoder library opens one decoder context per stream (16 KB of native
state, malloc'd and initialised by the library: here libc malloc + memset through ctypes) and
forgets to close it: the pointer is dropped, the memory stays. Python's own allocators never
see it; tracemalloc cannot either.

Truth: leaks from open_decoder (the malloc and memset; the line that touches the memory),
100 KB/s by default.
"""
import ctypes

import leakcommon as lc

CONTEXT_BYTES = 16 * 1024
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]


def open_decoder(stream_id):
    ctx = libc.malloc(CONTEXT_BYTES)
    ctypes.memset(ctx, stream_id & 0xFF, CONTEXT_BYTES)
    return ctx


def decode(stream_id):
    ctx = open_decoder(stream_id)
    # ... decode with ctx ...; libc.free(ctx) is what is missing
    return ctx != 0


def main():
    sc = lc.Scenario("native_ctypes", "native memory (C library via ctypes) never freed",
                     leaking=True, functions=["open_decoder"], rate=100 * lc.KB)
    per_context = lc.block_cost(CONTEXT_BYTES)
    state = {"n": 0}

    def tick(sc, now):
        while sc.behind(now):
            decode(state["n"])
            state["n"] += 1
            sc.kept += per_context

    sc.run(tick)


if __name__ == "__main__":
    main()
