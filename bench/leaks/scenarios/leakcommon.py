"""Shared harness of the leak scenarios in this directory (each scenario imports it).

A scenario is one small program built around one real-world leak pattern (or one pattern that
must *not* be called a leak). It knows its own truth and writes it down for bench/leaks/run:

  * which functions leak: the function whose line allocates the memory that is kept, plus the
    callers or helpers that allocate part of it (any of them is an acceptable first candidate);
  * how fast: it counts what it keeps itself (sizes of the objects it keeps, rounded up the way
    the allocator serves them, plus the growth of the containers that keep them) and writes that
    count every 0.25 s, so the true rate over any window is a fit of its own accounting;
  * or that it does not leak (leaking: false, no functions).

It leaks at a steady pace (--rate bytes/s of its own accounting), while a background thread
churns like a service would: every 10 ms a batch of 40 parsed requests (~250 short-lived dicts,
lists, strings and ints) and its 4-8 KB JSON rendering, all freed again. The batches cycle over
97 variants, so the allocators reach a steady state within the warm-up (with ever-new contents
the churn alone crept by a few KB/s for ~40 s: a leak of its own, by fragmentation).

Command line of every scenario:
  --rate B       leak pace in bytes per second (default: the scenario's own)
  --seconds S    stop after S seconds of running (default 120; 0: until SIGTERM/SIGINT)
  --truth PATH   write the truth there (below)
  --wait         once set up, wait for a line on stdin before starting the timed part
                 (the runner sends it once pymemspy is attached)
  --no-churn     no background churn thread
  --churn-mb M   page-level churn in MB/s (the slow-leak scenario only; see slow_leak_churn.py)

Output: "READY pid=N" on stdout once set up (before --wait), nothing else on stdout.

Truth file: JSON lines. The first is an object: scenario, pattern, leaking (bool), functions
(list of names, qualified as Python 3.11+ reports them, e.g. "Session.__init__"), file (the
scenario's file name), rate (nominal bytes/s, null when not leaking), pid, python, t0 (the
CLOCK_MONOTONIC second the timed part started, comparable with the runner's time.monotonic()).
Then one line per sample: [monotonic seconds, bytes kept so far by the leak] (for the scenarios
that do not leak: what their bounded structure holds, for information).
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
import tracemalloc

KB = 1024
MB = 1024 * 1024

PYMALLOC_MAX = 512          # blocks up to this size come from pymalloc pools
PYMALLOC_ALIGN = 16         # ... rounded up to a multiple of 16
MALLOC_HEADER = 8           # glibc: size field in front of every chunk
MALLOC_ALIGN = 16
MALLOC_MIN = 32
SAMPLE_EVERY = 0.25


def block_cost(size):
    """Bytes of memory a block of `size` requested bytes really takes: pymalloc rounds up to a
    multiple of 16; glibc malloc adds its 8-byte header and rounds up to 16 (at least 32)."""
    if size <= 0:
        return 0
    if size <= PYMALLOC_MAX:
        return (size + PYMALLOC_ALIGN - 1) // PYMALLOC_ALIGN * PYMALLOC_ALIGN
    return max(MALLOC_MIN, (size + MALLOC_HEADER + MALLOC_ALIGN - 1) // MALLOC_ALIGN * MALLOC_ALIGN)


def obj_cost(obj):
    """block_cost of one object as sys.getsizeof sees it (GC header included). Only right for
    objects that are one block (bytes, str, tuple, int, float, bytearray/array: their buffer is
    counted apart by the caller)."""
    return block_cost(sys.getsizeof(obj))


def trace_begin():
    """Starts tracemalloc; returns the snapshot to give trace_end()."""
    tracemalloc.start(1)
    return tracemalloc.take_snapshot()


def trace_end(before):
    """Stops tracemalloc; returns the bytes allocated since trace_begin() and still alive, each
    block rounded up by block_cost."""
    try:
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    counts = {}
    for snap, sign in ((after, 1), (before, -1)):
        for tr in snap.traces:
            if tr.traceback[0].filename.endswith("tracemalloc.py"):
                continue            # the first snapshot itself
            key = (tr.traceback, tr.size)
            counts[key] = counts.get(key, 0) + sign
    return sum(c * block_cost(size) for (tb, size), c in counts.items() if c > 0)


def in_child(fn, *args):
    """fn(*args) run in a forked child; returns its result (anything json can carry). What the
    measurement allocates and frees stays in the child: freed memory left in this process would
    be reused by the leak, and the leak would not grow resident memory for a while."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                        # the child: no threads but this one
        code = 1
        try:
            os.close(r)
            data = json.dumps(fn(*args)).encode()
            while data:
                data = data[os.write(w, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("the measurement in the child process failed")
    return json.loads(b"".join(chunks))


def _calibrate(make, n, held):
    keep = [None] * n
    grown = -held() if held else 0
    before = trace_begin()
    try:
        for i in range(n):
            keep[i] = make(i)
    finally:
        total = trace_end(before)
    if held:
        grown += held()
    return (total - grown) / n


def calibrate(make, n=2000, held=None):
    """Bytes one item costs, measured with tracemalloc on n items made by make(i) and kept alive
    (each block rounded up by block_cost), less what held() (the containers, counted apart by
    the scenario) grew meanwhile. Measured in a forked child (in_child): this process is
    neither traced nor left with the freed items' memory."""
    return in_child(_calibrate, make, n, held)


def _dict_steps(max_entries):
    d = {}
    last = sys.getsizeof(d)
    steps = [(0, last)]
    for i in range(max_entries):
        d["k%d" % i] = None
        size = sys.getsizeof(d)
        if size != last:
            steps.append((i + 1, size))
            last = size
    return steps


class DictModel:
    """getsizeof of a dict with str keys after n insertions (no deletions), for dicts the
    scenario cannot reach (functools.lru_cache keeps its own). Measured once on a throwaway
    dict (in a forked child), then looked up."""

    def __init__(self, max_entries):
        self.steps = [tuple(x) for x in in_child(_dict_steps, max_entries)]

    def size(self, n):
        size = self.steps[0][1]
        for start, s in self.steps:
            if start > n:
                break
            size = s
        return block_cost(size)


# ---- background churn ----

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


def _traffic_parse(i):
    """About 250 small objects: one batch of parsed requests (dicts, lists, strings, ints)."""
    batch = []
    for j in range(40):
        k = i * 40 + j
        batch.append({"id": k, "user": "user-%d" % (k * 7919 % 100000),
                      "tags": [_WORDS[j % 9], _WORDS[(j + 3) % 9], str(k % 977)],
                      "q": "x" * (j * 13 % 300)})
    return batch


def _traffic_render(batch):
    """A response: 4 to 8 KB of JSON text (malloc), and a few upper-cased strings."""
    body = json.dumps(batch)
    names = [r["user"].upper() for r in batch]
    return len(body) + len(names)


CHURN_CYCLE = 97       # bursts differ, but repeat: the allocators reach a steady state quickly


def traffic_forever(stop, period=0.01, warm=1000):
    """Every `period` s one burst of churn (parse + render), all of it freed at once; first
    `warm` bursts back to back (the allocators' steady state, before anything is recorded)."""
    for i in range(warm):
        _traffic_render(_traffic_parse(i % CHURN_CYCLE))
    i = 0
    nxt = time.monotonic()
    while not stop.is_set():
        _traffic_render(_traffic_parse(i % CHURN_CYCLE))
        i += 1
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()


# ---- the scenario ----

class Scenario:
    """Parses the common command line, runs the background churn, paces the leak, keeps the
    truth file. Use:

        sc = Scenario("name", "pattern", leaking=True, functions=[...], rate=100 * KB)
        ... set up ...
        sc.run(tick, held=lambda: container bytes)

    tick(sc, now) is called every `period` seconds of the timed part; a leaking scenario calls
    its leaking function while sc.behind(), adding what each call keeps to sc.kept. held() gives
    the bytes kept by containers (their growth is part of the leak), added to sc.kept."""

    def __init__(self, name, pattern, leaking, functions, rate, extra_args=None):
        p = argparse.ArgumentParser(description="%s: %s" % (name, pattern))
        p.add_argument("--rate", type=float, default=float(rate or 0),
                       help="leak pace in bytes/s (default %s)" % (rate or 0))
        p.add_argument("--seconds", type=float, default=120.0,
                       help="stop after this many seconds (default 120; 0: until SIGTERM)")
        p.add_argument("--truth", metavar="PATH", help="write the truth (JSON lines) there")
        p.add_argument("--wait", action="store_true",
                       help="wait for a line on stdin before the timed part")
        p.add_argument("--no-churn", action="store_true", help="no background churn thread")
        if extra_args:
            extra_args(p)
        self.args = p.parse_args()
        self.name = name
        self.pattern = pattern
        self.leaking = leaking
        self.functions = list(functions)
        self.rate = self.args.rate if leaking else None
        self.kept = 0
        self.held = None
        self.t0 = None
        self.running = True
        self._stop = threading.Event()
        self._truth = None
        self._threads = []
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame):
        self.running = False

    def total(self):
        return self.kept + (self.held() if self.held else 0)

    def behind(self, now=None):
        """True while what the leak kept is below its pace (rate x time since the start)."""
        if now is None:
            now = time.monotonic()
        return self.total() < self.args.rate * (now - self.t0)

    def start_thread(self, target, *args, name=None):
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def stopping(self):
        return self._stop

    def _sample(self, now):
        if self._truth:
            self._truth.write("[%.4f, %d]\n" % (now, self.total()))
            self._truth.flush()

    def begin(self, held=None, warm=1.5):
        """Starts the churn, says READY, waits for the go (--wait), starts the clock and the
        truth file. For scenarios with a loop of their own (asyncio); others call run()."""
        self.held = held
        if not self.args.no_churn:
            self.start_thread(traffic_forever, self._stop, name="churn")
            time.sleep(warm)            # the churn reaches its steady state before we start
        sys.stdout.write("READY pid=%d\n" % os.getpid())
        sys.stdout.flush()
        if self.args.wait:
            sys.stdin.readline()
        self.t0 = time.monotonic()
        if self.args.truth:
            self._truth = open(self.args.truth, "w")
            self._truth.write(json.dumps({
                "scenario": self.name, "pattern": self.pattern, "leaking": self.leaking,
                "functions": self.functions, "file": os.path.basename(sys.argv[0]),
                "rate": self.rate, "pid": os.getpid(),
                "python": "%d.%d.%d" % sys.version_info[:3], "t0": self.t0}) + "\n")
            self._sample(self.t0)
        self._deadline = self.t0 + self.args.seconds if self.args.seconds > 0 else None
        self._next_sample = self.t0 + SAMPLE_EVERY

    def keep_going(self, now):
        """Writes a truth sample when one is due; False once it is time to stop."""
        if not self.running or (self._deadline is not None and now >= self._deadline):
            return False
        if now >= self._next_sample:
            self._sample(now)
            self._next_sample += SAMPLE_EVERY
        return True

    def end(self):
        self._stop.set()
        self._sample(time.monotonic())
        if self._truth:
            self._truth.close()
            self._truth = None

    def run(self, tick, held=None, period=0.01, warm=1.5):
        """begin(), then tick(self, now) every `period` seconds until the end."""
        self.begin(held, warm)
        nxt = self.t0
        while True:
            now = time.monotonic()
            if not self.keep_going(now):
                break
            tick(self, now)
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()
        self.end()
