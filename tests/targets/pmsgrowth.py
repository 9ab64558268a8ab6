"""Shared by the `record` and `top` e2e targets: RSS timeline, truth file, paced loop, churn, ready file.

Every growth target knows its truth and measures itself:
  * a timeline thread appends "MONOTONIC_TIME RSS_BYTES PROGRESS" to a file every 50 ms (RSS from
    /proc/self/statm; CLOCK_MONOTONIC is the same clock in every process of the host, so the
    harness can slice the timeline by the recording's start and end);
  * once warmed up it writes a truth file (JSON, atomically): its pid, interpreter, the function
    that leaks (the name the interpreter gives it, file, the line that allocates, and the whole
    stack of the leaking call, innermost first), the function that churns, the period.
The leak is paced by the clock (one leak() call every PERIOD seconds), so its rate does not depend
on how fast the interpreter runs; churn() runs for half of every period and the process sleeps
the other half (gentle on a 2-core host running several cases at once).
Python 3.8+ standard library only.
"""
import json
import os
import platform
import sys
import threading
import time

import pmstruth

PAGE = os.sysconf("SC_PAGE_SIZE")
LEAK_MARKER = "# LEAK-" "LINE"
_statm = None
_stack = []


def rss():
    """Resident bytes of this process (file + anon + shmem pages: what kmem:rss_stat counts)."""
    global _statm
    if _statm is None:
        _statm = os.open("/proc/self/statm", os.O_RDONLY)
    return int(os.pread(_statm, 200, 0).split()[1]) * PAGE


class Progress:
    """A counter the main loop bumps; the timeline writes it next to the RSS."""

    def __init__(self):
        self.n = 0


class Timeline(threading.Thread):
    def __init__(self, path, progress, interval=0.05):
        threading.Thread.__init__(self, name="timeline")
        self.daemon = True
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.progress = progress
        self.interval = interval

    def sample(self):
        os.write(self.fd, ("%.6f %d %d\n" % (time.monotonic(), rss(), self.progress.n)).encode())

    def run(self):
        while True:
            self.sample()
            time.sleep(self.interval)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=True)
        f.write("\n")
    os.rename(tmp, path)


def python_info():
    return {"version": platform.python_version(), "build": pmstruth.build(),
            "hexversion": sys.hexversion, "executable": sys.executable}


def marker_line(path, marker, first=1):
    """The first line at or after `first` that holds `marker`."""
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if n >= first and marker in text:
                return n
    raise RuntimeError("marker %r not found in %s after line %d" % (marker, path, first))


def func_info(func, marker=None):
    """{function, file, first_line[, line]} of a Python function; line = the first line of the
    function holding `marker`."""
    code = func.__code__
    out = {"function": pmstruth.qualname(code), "file": code.co_filename,
           "first_line": code.co_firstlineno}
    if marker is not None:
        out["line"] = marker_line(code.co_filename, marker, code.co_firstlineno)
    return out


def _probe(frame, info):
    """Called on the very line that calls leak(): records the stack of that call, innermost first."""
    if not _stack and info.get("line"):
        _stack.append({"function": info["function"], "name": info["function"].rsplit(".", 1)[-1],
                       "file": info["file"], "line": info["line"]})
        _stack.extend(pmstruth.frames_of(frame))


def run(leak, churn, period, truth_path, timeline_path, lifetime, extra=None, warmup=1.0,
        leak_info=None, churn_info=None):
    """The paced loop: leak() every `period` s, churn() for half of each period, sleep the rest.
    Writes the truth after `warmup` s; returns after `lifetime` s."""
    if leak_info is None:
        leak_info = func_info(leak, LEAK_MARKER)
    if churn_info is None:
        churn_info = func_info(churn)
    progress = Progress()
    tl = Timeline(timeline_path, progress)
    tl.sample()
    tl.start()
    start = time.monotonic()
    nxt = start
    wrote = False
    while True:
        now = time.monotonic()
        if now - start > lifetime:
            break
        if not wrote and now - start >= warmup:
            truth = {"pid": os.getpid(), "tid": threading.get_native_id(), "python": python_info(),
                     "leak": dict(leak_info, stack=list(_stack)), "churn": churn_info,
                     "period": period, "timeline": timeline_path, "started": start, "warm": now}
            if extra:
                truth.update(extra)
            write_json(truth_path, truth)
            wrote = True
        if now >= nxt:
            leak(); _probe(sys._getframe(), leak_info)  # noqa: E702 (one line: one f_lineno)
            progress.n += 1
            nxt += period
            if now - nxt > 10 * period:  # far behind (host overloaded): do not burst
                nxt = now + period
            churn_until = min(nxt, time.monotonic() + period / 2)
            while time.monotonic() < churn_until:
                churn()
        else:
            time.sleep(min(nxt - now, period))
    tl.sample()
    sys.stdout.write("done: %d leak calls\n" % progress.n)
    sys.stdout.flush()


def run_in_thread(args, extra, churn, churners=0):
    """run(*args) in a second Python thread ("leaker") while this one churns, and `churners` more
    threads ("churner") churn too; returns when the leaker does."""
    def churn_forever():
        while True:
            churn()
            time.sleep(0.002)

    t = threading.Thread(target=run, args=args, kwargs={"extra": extra}, name="leaker")
    t.daemon = True
    t.start()
    for _ in range(churners):
        c = threading.Thread(target=churn_forever, name="churner")
        c.daemon = True
        c.start()
    while t.is_alive():
        churn()
        time.sleep(0.004)


def parse_args(argv, usage):
    """TRUTH.json TIMELINE [LIFETIME_S] [MODE]"""
    if len(argv) < 3:
        usage_exit(usage)
    truth = os.path.abspath(argv[1])
    timeline = os.path.abspath(argv[2])
    lifetime = float(argv[3]) if len(argv) > 3 else 90.0
    mode = argv[4] if len(argv) > 4 else None
    return truth, timeline, lifetime, mode


# Parts many targets share and no case asserts on; what a case asserts on (the leaking or allocating
# functions and their lines) stays in each target. sleeper.py, which must run on 2.7, keeps its own
# ready file.
def churn():
    """About 2000 small objects made and dropped, 50 at a time: every allocation (the lists too)
    stays under 512 bytes, so pymalloc serves it from its pools, not the C heap the leak grows.
    The background work of the leak_*.py targets and top_leak.py (nothing asserts on where it is)."""
    total = 0
    for _ in range(40):
        items = [{"i": i, "s": "k%d" % i, "t": (i, i + 1)} for i in range(50)]
        for d in items:
            total += d["t"][1] + len(d["s"])
    return total


def usage_exit(text):
    """A bad command line: `text` on stderr, exit 2."""
    sys.stderr.write(text + "\n")
    sys.exit(2)


def write_ready(path):
    """The ready signal of the targets that write no truth: `path` holding the pid, atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, path)


def wait_stdin(lifetime):
    """Until a line or EOF on stdin, or `lifetime` seconds."""
    end = time.monotonic() + lifetime
    waiter = threading.Thread(target=sys.stdin.readline, daemon=True)
    waiter.start()
    while waiter.is_alive() and time.monotonic() < end:
        waiter.join(0.2)
