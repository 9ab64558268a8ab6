"""Fast growth: the anchor's churn plus resident memory growing at a fixed pace from grow(): by
default 50 MB per second of the process's own CPU time (so 50 MB/s while it has its core, and the
same growth per unit of work whoever else shares the CPU), in 4 KiB `bytes` objects whose every
byte is written (so every page is really touched). When what it holds reaches --cap-mb it drops everything (freed to libc, which
gives the top of the heap back to the kernel) and grows again, so a long run stays bounded.
This is where the growth source sees the most events (thousands of page faults a second): its
stack-walk budget must hold the cost down.
usage: growth.py [--counter PATH] [--seconds S] [--rate-mb MB_PER_S] [--cap-mb MB]
"""
import time

import wlcommon
from wlcommon import churn

HELD = []
CHUNK = 4096                    # bytes per object, header included
PAYLOAD = CHUNK - 33            # a bytes object's header is 33 bytes on 64-bit


def grow(count, payload):
    # `payload` is a variable: b"\x01" * <constant> could be folded into one shared constant
    for _ in range(count):
        HELD.append(b"\x01" * payload)


def release():
    HELD.clear()


def extra(p):
    p.add_argument("--rate-mb", type=float, default=50.0,
                   help="growth in MB (10^6 bytes) per CPU second of this process (default 50)")
    p.add_argument("--cap-mb", type=float, default=1024.0, help="drop everything when holding this much")


def main():
    h = wlcommon.Harness("growth", __doc__, extra)
    publish = h.publish
    rate = h.args.rate_mb * 1e6
    cap = int(h.args.cap_mb * 1e6)
    clock = time.process_time       # a system call: read every 8 iterations only
    t0 = clock()
    n = 0
    acc = 0
    grown = 0           # bytes grown since the start
    held = 0            # bytes held now
    while h.running:
        acc += churn(n)
        due = int((clock() - t0) * rate) - grown if (n & 7) == 0 else 0
        if due >= CHUNK:
            k = due // CHUNK
            grow(k, PAYLOAD)
            grown += k * CHUNK
            held += k * CHUNK
            if held >= cap:
                release()
                held = 0
        n += 1
        publish(n, 0, grown)
    h.finish(n, grown=grown)


if __name__ == "__main__":
    main()
