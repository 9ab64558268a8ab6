"""Shared harness of the benchmark workloads (imported by the scripts next to it).

Every workload loops over one unit of work ("an iteration") until SIGTERM/SIGINT or --seconds, and
reports how much it did:

  * live, in the counter file given with --counter PATH (created if absent): three native-endian u64
    at offset 0: iterations done, bytes the workload leaked on purpose, bytes it grew on purpose.
    They are rewritten after every iteration, so an observer can read the work done over any window
    (bench/overhead reads them together with /proc/PID/stat).
  * at the end, one line on stdout:
    RESULT workload=<name> py=<x.y.z> iters=<n> secs=<t> ips=<n/t> leaked=<bytes> grown=<bytes>

Nothing here allocates per iteration: the counter is a shared mapping written in place.
"""
import argparse
import mmap
import os
import signal
import struct
import sys
import time

# Native byte order and size: each field is packed with one 8-byte copy (one aligned store), so
# an observer on another CPU never sees half of a value, even if we are preempted mid-update
# (the standard-size "<Q" formats are packed byte by byte).
COUNTER_FORMAT = "@QQQ"
COUNTER_SIZE = struct.calcsize(COUNTER_FORMAT)


class Harness:
    def __init__(self, name, description, extra_args=None):
        p = argparse.ArgumentParser(description=description)
        p.add_argument("--counter", metavar="PATH",
                       help="file that receives the live counters (iterations, leaked, grown)")
        p.add_argument("--seconds", type=float, default=0.0,
                       help="stop after this long (default: run until SIGTERM/SIGINT)")
        if extra_args:
            extra_args(p)
        self.args = p.parse_args()
        self.name = name
        self.running = True
        self._mm = None
        if self.args.counter:
            fd = os.open(self.args.counter, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size < mmap.PAGESIZE:
                    os.ftruncate(fd, mmap.PAGESIZE)
                self._mm = mmap.mmap(fd, mmap.PAGESIZE)
            finally:
                os.close(fd)
            pack_into = struct.Struct(COUNTER_FORMAT).pack_into
            mm = self._mm

            def publish(iters, leaked=0, grown=0):
                pack_into(mm, 0, iters, leaked, grown)
            self.publish = publish
        else:
            self.publish = lambda iters, leaked=0, grown=0: None
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        if self.args.seconds > 0:
            signal.signal(signal.SIGALRM, self._stop)
            signal.setitimer(signal.ITIMER_REAL, self.args.seconds)
        self.t0 = time.perf_counter()

    def _stop(self, signum, frame):
        self.running = False

    def finish(self, iters, leaked=0, grown=0):
        secs = time.perf_counter() - self.t0
        self.publish(iters, leaked, grown)
        print("RESULT workload=%s py=%d.%d.%d iters=%d secs=%.3f ips=%.1f leaked=%d grown=%d"
              % ((self.name,) + tuple(sys.version_info[:3])
                 + (iters, secs, iters / secs if secs > 0 else 0.0, leaked, grown)),
              flush=True)


def churn(i):
    """About 400 short-lived small objects (dicts, lists, tuples, strings, ints), all freed on
    return: in steady state it needs no new memory."""
    tmp = []
    for j in range(50):
        d = {"a": j, "b": str(j * i), "c": [j, j + 1, j + 2]}
        t = (j, i, "x" * (j % 17))
        s = "item-%d-%d" % (i, j)
        tmp.append((d, t, s))
    lst = [x[2].upper() for x in tmp]
    joined = ",".join(lst)
    return len(joined)
