"""e2e target for `record`: memory grows in threads the interpreter does not know about
(usage: leak_nothread.py TRUTH.json TIMELINE [LIFETIME_S]).

Every 250 ms leak() starts a native thread with libc's pthread_create whose start routine is
strdup() on a 1 MiB string, and joins it: the native thread mallocs 1 MiB (fresh mmap'ed memory)
and copies the string into it, so the pages are first touched by a thread with no Python thread
state. The copy is never freed (about 4 MB/s). Meanwhile churn() makes and drops small objects in
the main thread. pymemspy should charge the growth to "<no python thread>", not to leak() (which
only waits in pthread_join).
"""
import ctypes
import sys

import pmsgrowth

CHUNK = 1024 * 1024
PERIOD = 0.25
KEPT = []
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.pthread_create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p]
LIBC.pthread_create.restype = ctypes.c_int
LIBC.pthread_join.argtypes = [ctypes.c_ulong, ctypes.POINTER(ctypes.c_void_p)]
LIBC.pthread_join.restype = ctypes.c_int
STRDUP = ctypes.cast(LIBC.strdup, ctypes.c_void_p).value
SOURCE = ctypes.create_string_buffer(b"\x5a" * CHUNK)  # NUL-terminated


def leak():
    t = ctypes.c_ulong()
    ret = ctypes.c_void_p()
    rc = LIBC.pthread_create(ctypes.byref(t), None, STRDUP, ctypes.addressof(SOURCE))
    if rc != 0:
        raise OSError(rc, "pthread_create")
    rc = LIBC.pthread_join(t, ctypes.byref(ret))
    if rc != 0 or not ret.value:
        raise OSError(rc, "pthread_join / strdup")
    KEPT.append(ret.value)


def main():
    truth, timeline, lifetime, _ = pmsgrowth.parse_args(sys.argv, __doc__.split("\n\n")[0])
    leak_info = {"function": "<no python thread>", "file": None, "line": None, "first_line": None,
                 "caller": pmsgrowth.func_info(leak)}
    pmsgrowth.run(leak, pmsgrowth.churn, PERIOD, truth, timeline, lifetime, leak_info=leak_info,
                  extra={"target": "leak_nothread", "chunk": CHUNK})


if __name__ == "__main__":
    main()
