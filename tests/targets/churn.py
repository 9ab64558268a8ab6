"""e2e target for `record` that does not leak: two threads churn small objects and compute a
deterministic result (usage: churn.py READY_FILE TIMELINE ROUNDS [PACE_MS]).

After a short warm-up it writes READY_FILE (its pid) and waits for a line on stdin, then
  * ROUNDS > 0: each thread runs ROUNDS rounds of work (sleeping PACE_MS after each), then the
    main thread prints the result and the process exits 0. The output depends only on ROUNDS and
    the interpreter: it must be the same with and without a profiler attached;
  * ROUNDS == 0: the threads run rounds until another line (or EOF) arrives on stdin, then it
    prints how many rounds ran and whether any round disagreed with the reference, and exits 0.
Every round recomputes one of 7 reference digests (computed in the warm-up) and compares.
The timeline file (see pmsgrowth.py) counts the rounds done, for the harness's progress checks.
"""
import hashlib
import json
import sys
import threading
import time

import pmsgrowth

NSEEDS = 7


class Item:
    __slots__ = ("key", "value", "pair")

    def __init__(self, key, value, pair):
        self.key = key
        self.value = value
        self.pair = pair


def work(seed):
    """A few milliseconds of small-object churn; returns a digest that depends on seed only."""
    table = {}
    for i in range(1200):
        k = "w%d_%d" % (seed, (i * 7919) % 1201)
        table[k] = Item(k, str(i * i + seed), (i, [i, i + seed]))
    rows = sorted(table.values(), key=lambda it: (len(it.value), it.key))
    doc = [{"k": it.key, "v": it.value, "p": it.pair[1]} for it in rows[::5]]
    text = json.dumps(doc, sort_keys=True)
    acc = 0.0
    for it in rows:
        acc += (it.pair[0] % 13) * 0.25 - len(it.key) / 8.0
    return hashlib.sha256(("%s|%.3f|%d" % (text, acc, len(table))).encode()).hexdigest()


class Worker:
    def __init__(self, index, refs, progress, lock):
        self.index = index
        self.refs = refs
        self.progress = progress
        self.lock = lock
        self.rounds = 0
        self.mismatches = 0
        self.digest = hashlib.sha256()

    def one_round(self):
        seed = (self.rounds * 3 + self.index) % NSEEDS
        d = work(seed)
        if d != self.refs[seed]:
            self.mismatches += 1
        self.digest.update(d.encode())
        self.rounds += 1
        with self.lock:
            self.progress.n += 1


def main():
    if len(sys.argv) < 4:
        pmsgrowth.usage_exit(__doc__.split("\n\n")[0])
    ready, timeline, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pace = float(sys.argv[4]) / 1000.0 if len(sys.argv) > 4 else 0.0
    refs = [work(s) for s in range(NSEEDS)]
    if [work(s) for s in range(NSEEDS)] != refs:
        sys.stdout.write("reference digests are not deterministic\n")
        sys.exit(1)
    progress = pmsgrowth.Progress()
    tl = pmsgrowth.Timeline(timeline, progress)
    tl.sample()
    tl.start()
    lock = threading.Lock()
    workers = [Worker(i, refs, progress, lock) for i in range(2)]
    stop = threading.Event()

    def loop(w):
        while (w.rounds < rounds) if rounds > 0 else not stop.is_set():
            w.one_round()
            if pace:
                time.sleep(pace)

    pmsgrowth.write_ready(ready)
    sys.stdin.readline()
    t = threading.Thread(target=loop, args=(workers[1],), name="worker")
    t.start()
    if rounds == 0:
        def wait_stop():
            sys.stdin.readline()
            stop.set()
        s = threading.Thread(target=wait_stop, name="stdin")
        s.daemon = True
        s.start()
    loop(workers[0])
    t.join()
    tl.sample()
    refs_digest = hashlib.sha256("".join(refs).encode()).hexdigest()
    if rounds > 0:
        sys.stdout.write("rounds %d x 2\n" % rounds)
        for w in workers:
            sys.stdout.write("thread %d: %s\n" % (w.index, w.digest.hexdigest()))
    else:
        sys.stdout.write("rounds %d\n" % sum(w.rounds for w in workers))
    sys.stdout.write("references %s\n" % refs_digest)
    sys.stdout.write("mismatches %d\n" % sum(w.mismatches for w in workers))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
