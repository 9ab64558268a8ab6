"""e2e target for `record`: native buffers grow in one function while churn() makes and drops
small objects (usage: leak_native.py TRUTH.json TIMELINE [LIFETIME_S] [ctypes|array]).

  ctypes (default): leak_ctypes() makes a 64 KiB ctypes char array every 20 ms, fills it with
                    ctypes.memset and keeps it (about 3.2 MB/s of C buffers, no Python object of
                    that size). Not ctypes.create_string_buffer: that is a Python function, so the
                    innermost Python frame would be in ctypes/__init__.py;
  array:            leak_array() grows one array.array by 64 KiB every 20 ms (frombytes): the
                    interpreter reallocs it, glibc moves it with mremap once it is large, and only
                    the new tail is touched (about 3.2 MB/s).
Either way the pages are first touched inside the leaking function, on its LEAK-LINE.
"""
import array
import ctypes
import sys

import pmsgrowth

CHUNK = 64 * 1024
PERIOD = 0.02
KEPT = []
ARR = array.array("B")
BLOCK = b"\x5a" * CHUNK
BUFFER = ctypes.c_char * CHUNK


def leak_ctypes():
    buf = BUFFER(); ctypes.memset(buf, 0x5A, CHUNK); KEPT.append(buf)  # LEAK-LINE  (noqa: E702)


def leak_array():
    ARR.frombytes(BLOCK)  # LEAK-LINE


def main():
    truth, timeline, lifetime, mode = pmsgrowth.parse_args(sys.argv, __doc__.split("\n\n")[0])
    mode = mode or "ctypes"
    leak = {"ctypes": leak_ctypes, "array": leak_array}.get(mode)
    if leak is None:
        pmsgrowth.usage_exit("unknown mode %r" % mode)
    pmsgrowth.run(leak, pmsgrowth.churn, PERIOD, truth, timeline, lifetime,
                  extra={"target": "leak_native", "mode": mode, "chunk": CHUNK})


if __name__ == "__main__":
    main()
