"""Takes every hardware debug register of every CPU, as a debugger's or perf's CPU-wide
breakpoints would, and holds them until killed (or for argv[1] seconds): a real host on which
pymemspy can open no watchpoint. Prints "held N" once they are all taken. Needs root
(CPU-wide perf events). Python 3.8+ standard library only."""
import ctypes
import os
import signal
import sys
import time

PERF_TYPE_BREAKPOINT = 5
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_LEN_8 = 8
NR_PERF_EVENT_OPEN = 298  # x86_64
DEBUG_REGISTERS = 4       # x86: DR0-DR3


class PerfEventAttr(ctypes.Structure):
    # enough of struct perf_event_attr (PERF_ATTR_SIZE_VER5 is 112 bytes)
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64),
                ("wakeup_events", ctypes.c_uint32), ("bp_type", ctypes.c_uint32),
                ("bp_addr", ctypes.c_uint64), ("bp_len", ctypes.c_uint64),
                ("pad", ctypes.c_uint8 * 64)]


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    words = (ctypes.c_uint64 * DEBUG_REGISTERS)()
    fds = []
    for cpu in range(os.cpu_count() or 1):
        for k in range(DEBUG_REGISTERS):
            a = PerfEventAttr()
            a.type = PERF_TYPE_BREAKPOINT
            a.size = 112
            a.bp_type = HW_BREAKPOINT_W
            a.bp_addr = ctypes.addressof(words) + 8 * k
            a.bp_len = HW_BREAKPOINT_LEN_8
            a.sample_period = 1
            a.flags = 1 << 5  # exclude_kernel: user-space writes only (none happen there)
            fd = libc.syscall(NR_PERF_EVENT_OPEN, ctypes.byref(a), -1, cpu, -1, 0)
            if fd < 0:
                print("cannot take debug register %d of CPU %d: %s"
                      % (k, cpu, os.strerror(ctypes.get_errno())), flush=True)
                return 1
            fds.append(fd)
    print("held %d" % len(fds), flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
