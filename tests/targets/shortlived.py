"""e2e target that exits while being dumped (usage: shortlived.py READY_FILE SEED).

Writes READY_FILE, waits for a line on stdin (the harness starts dumping then), churns threads and
frames for a few milliseconds (chosen from SEED) and exits: through normal interpreter finalization,
with os._exit, or while a thread is still running. Python 3.8+.
"""
import os
import random
import sys
import threading
import time

import pmsgrowth


def churn(depth):
    if depth:
        return churn(depth - 1)
    return [str(i) for i in range(200)]


def worker(stop):
    while not stop.is_set():
        churn(20)


def main():
    ready, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    pmsgrowth.write_ready(ready)
    sys.stdin.readline()
    stop = threading.Event()
    threads = []
    for _ in range(rng.randint(1, 4)):
        t = threading.Thread(target=worker, args=(stop,))
        t.daemon = True
        t.start()
        threads.append(t)
    end = time.time() + rng.uniform(0.001, 0.030)
    while time.time() < end:
        churn(rng.randint(1, 30))
        if rng.random() < 0.2:
            t = threading.Thread(target=churn, args=(5,))
            t.start()
    mode = seed % 3
    if mode == 0:
        os._exit(0)
    if mode == 1:
        stop.set()
        for t in threads:
            t.join()
        sys.exit(0)
    sys.exit(0)  # daemon threads still running through finalization


if __name__ == "__main__":
    main()
