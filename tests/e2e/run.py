#!/usr/bin/env python3
"""End-to-end tests of `pymemspy dump` against real CPython processes.

    python3 tests/e2e/run.py [--subset] [--only PATTERN] [-v] [-j N] [--keep] [--list] [--targets-only]

The binary comes from $PMS_BIN (default ./pymemspy, then the repository's ./pymemspy). Each target under
tests/targets/ parks its threads at known places and writes a "truth" file with what the interpreter itself
reports (sys._current_frames() + traceback.extract_stack(), qualnames on 3.11+, native thread ids); the
cases compare `pymemspy dump --json` with it thread by thread (matched by native tid) and frame by frame.

Every case runs under a deadline and kills its process groups whatever happens. Output: one line per case
(PASS/FAIL/SKIP name: detail), then exactly `N passed, M failed[, K skipped]`; exit status 1 if any failed.
Plain Python 3.8+ standard library only.

Environment: PMS_BIN, PMS_E2E_JOBS (parallel cases, default 3), PMS_E2E_TIMEOUT_SCALE (multiply every
deadline, default 1, 3 with --subset for sanitizer builds), PMS_E2E_SEED (seed of the exit-timing cases).
"""
import argparse
import atexit
import concurrent.futures
import fnmatch
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGETS = os.path.join(REPO, "tests", "targets")
PYENV = "/root/.pyenv/versions"

# (id, path): every interpreter the dump cases run against; absent ones are skipped.
INTERPRETERS = [
    ("3.8.18", PYENV + "/3.8.18/bin/python3.8"),
    ("3.9.18", PYENV + "/3.9.18/bin/python3.9"),
    ("3.10.13", PYENV + "/3.10.13/bin/python3.10"),
    ("3.11.7", PYENV + "/3.11.7/bin/python3.11"),
    ("3.12.1", PYENV + "/3.12.1/bin/python3.12"),
    ("3.13.0", PYENV + "/3.13.0/bin/python3.13"),
    ("deb-3.11", "/usr/bin/python3.11"),     # Debian: libpython linked in, stripped, non-PIE
    ("deb-3.11d", "/usr/bin/python3.11d"),   # Debian debug build
]
# Interpreters pymemspy does not support: dump must exit 5 and name the version.
UNSUPPORTED = [
    ("2.7.18", PYENV + "/2.7.18/bin/python", "2.7"),
    ("3.6.15", PYENV + "/3.6.15/bin/python", "3.6"),
    ("3.7.16", PYENV + "/3.7.16/bin/python", "3.7"),
]
# --subset: a representative set for slow (sanitizer) builds. Old frame objects, the static stripped
# Debian build, and _Py_DebugOffsets; the spinner and exit races on 3.12 (shim frames, new GIL holder).
SUBSET = {
    "dump/stacks/3.8.18", "dump/stacks/deb-3.11", "dump/stacks/3.13.0", "dump/spinner/3.12.1",
    "exits-mid-dump/3.12.1", "no-such-pid", "not-python/sleep", "unsupported/3.7.16",
    "no-privilege", "usage",
}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]

EXIT_OK, EXIT_USAGE, EXIT_NOPROC, EXIT_NOTPY, EXIT_UNSUPPORTED, EXIT_PRIV = 0, 2, 3, 4, 5, 6

OPTS = None          # parsed command line
BIN = None           # absolute path of the binary
SCALE = 1.0          # deadline multiplier
PRINT_LOCK = threading.Lock()


class Fail(Exception):
    pass


class Skip(Exception):
    pass


# --- processes ----------------------------------------------------------------------------------
def clean_env():
    env = dict(os.environ)
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONDEVMODE",
              "PYTHONTRACEMALLOC", "PYTHONASYNCIODEBUG"):
        env.pop(k, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUTF8"] = "1"
    return env


def short(b, limit=1500):
    if isinstance(b, bytes):
        b = b.decode("utf-8", "replace")
    b = b.strip()
    if len(b) > limit:
        b = b[:limit] + "... [%d more chars]" % (len(b) - limit)
    return b


class Run:
    """One finished run of the binary."""

    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    def cmd(self):
        return " ".join(self.argv)

    def describe(self, with_stdout=False):
        s = "`%s` -> exit %s in %.2fs" % (self.cmd(), self.rc, self.elapsed)
        if self.err.strip():
            s += "\n    stderr: " + short(self.err).replace("\n", "\n            ")
        else:
            s += "\n    stderr: (empty)"
        if with_stdout:
            s += "\n    stdout: " + (short(self.out, 800).replace("\n", "\n            ") or "(empty)")
        return s


class Ctx:
    """What one case owns: a temporary directory, its processes (each in its own process group),
    a deadline and a log."""

    def __init__(self, name, timeout):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="pms-e2e-")
        os.chmod(self.dir, 0o755)
        self.timeout = timeout
        self.started = 0.0
        self.deadline = float("inf")
        self.procs = []
        self.lock = threading.Lock()
        self.log = []
        self.notes = []
        self.killed = False

    def start(self):
        self.started = time.time()
        self.deadline = self.started + self.timeout

    def remaining(self):
        return self.deadline - time.time()

    def check_time(self, what):
        if self.killed or self.remaining() <= 0:
            raise Fail("case deadline (%.0fs) passed while %s" % (self.timeout, what))

    def spawn(self, argv, stdin=None, name="target"):
        """Start a process in its own session; its stdout/stderr go to files in the case dir."""
        self.check_time("starting " + name)
        n = len(self.procs)
        outp = os.path.join(self.dir, "%s.%d.out" % (name, n))
        errp = os.path.join(self.dir, "%s.%d.err" % (name, n))
        with open(outp, "wb") as o, open(errp, "wb") as e:
            p = subprocess.Popen(argv, stdin=stdin, stdout=o, stderr=e, cwd=self.dir, env=clean_env(),
                                 start_new_session=True)
        p.out_path, p.err_path, p.argv = outp, errp, argv
        with self.lock:
            self.procs.append(p)
        self.log.append("spawned pid %d: %s" % (p.pid, " ".join(argv)))
        return p

    def proc_output(self, p):
        try:
            with open(p.err_path, "rb") as f:
                err = f.read()
            with open(p.out_path, "rb") as f:
                out = f.read()
        except OSError:
            return ""
        return "stdout: %s\n    stderr: %s" % (short(out, 600) or "(empty)", short(err) or "(empty)")

    def run_bin(self, args, timeout=20.0, user=None):
        """Run the binary with `args`; a crash, a signal, an exit code >= 124 or a hang fails the case."""
        self.check_time("about to run pymemspy " + " ".join(args))
        argv = ([] if user is None else list(user)) + [BIN] + list(args)
        limit = max(1.0, min(timeout * SCALE, self.remaining()))
        t0 = time.time()
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 cwd=self.dir, start_new_session=True)
        except OSError as e:
            raise Fail("cannot run `%s`: %s" % (" ".join(argv), e))
        with self.lock:
            self.procs.append(p)
        try:
            out, err = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            killpg(p)
            out, err = p.communicate()
            r = Run(argv, "timeout", out, err, time.time() - t0)
            raise Fail("pymemspy hung (killed after %.0fs): %s" % (limit, r.describe()))
        r = Run(argv, p.returncode, out, err, time.time() - t0)
        self.log.append(r.describe())
        if r.rc < 0:
            raise Fail("pymemspy died of signal %d: %s" % (-r.rc, r.describe(True)))
        if r.rc >= 124:
            raise Fail("pymemspy exited %d (>= 124 is reserved for timeout/signals): %s"
                       % (r.rc, r.describe(True)))
        return r

    def kill_all(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            killpg(p)
        for p in procs:
            try:
                p.wait(timeout=5)
            except Exception:
                pass

    def cleanup(self):
        self.kill_all()
        if not OPTS.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def killpg(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.kill()
    except (ProcessLookupError, OSError):
        pass


def python_target(ctx, python, script, *args, **kw):
    return ctx.spawn([python, "-B", os.path.join(TARGETS, script)] + list(args), **kw)


def wait_file(ctx, path, proc, what, timeout=30.0):
    """Wait until `path` exists; fail early if `proc` exits."""
    end = time.time() + timeout * SCALE
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise Fail("target exited (rc %s) before writing its %s\n    %s"
                       % (proc.returncode, what, ctx.proc_output(proc)))
        if time.time() > end:
            raise Fail("no %s after %.0fs\n    %s" % (what, timeout * SCALE,
                                                       ctx.proc_output(proc) if proc else ""))
        ctx.check_time("waiting for the " + what)
        time.sleep(0.02)


def tasks_of(pid):
    try:
        return set(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return set()


def proc_status(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def cpu_ticks(pid, tid):
    try:
        with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def in_syscall(pid, tid):
    """The thread is blocked in a system call (the parked ones sleep in nanosleep/futex/select)."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            first = f.read().split()[:1]
    except OSError:
        return False
    return bool(first) and first[0].isdigit() and first[0] != "-1" and \
        proc_status(pid, tid).get("State", "")[:1] in ("S", "D")


def wait_parked(ctx, p, truth, what):
    """Wait until every thread but the spinners is blocked in a system call again."""
    tids = [t["tid"] for t in truth["threads"] if not t["spin"]]
    end = time.time() + 5 * SCALE
    while True:
        busy = [tid for tid in tids if not in_syscall(p.pid, tid)]
        if not busy:
            return
        if p.poll() is not None:
            raise Fail("target exited (rc %s) %s\n    %s" % (p.returncode, what, ctx.proc_output(p)))
        if time.time() > end:
            raise Fail("threads %s of the target are not blocked in a system call %s" % (busy, what))
        time.sleep(0.01)


def start_truth_target(ctx, python, script, user=None):
    """Start a pmstruth target; return (proc, truth) once it is parked and its reporter thread is gone."""
    truth_path = os.path.join(ctx.dir, "truth.json")
    argv = ([] if user is None else list(user)) + [python, "-B", os.path.join(TARGETS, script), truth_path]
    p = ctx.spawn(argv)
    wait_file(ctx, truth_path, p, "truth file")
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    if "error" in truth:
        raise Fail("target could not establish its truth: %s\n    %s" % (truth["error"], ctx.proc_output(p)))
    truth["path"] = truth_path
    want = set(t["tid"] for t in truth["threads"])
    end = time.time() + 10 * SCALE
    while True:
        have = tasks_of(p.pid)
        if have == want:
            break
        if p.poll() is not None:
            raise Fail("target exited (rc %s) after writing its truth\n    %s" % (p.returncode, ctx.proc_output(p)))
        if time.time() > end:
            raise Fail("target's threads %s never matched its truth's %s (reporter tid %s)"
                       % (sorted(have), sorted(want), truth.get("reporter_tid")))
        time.sleep(0.02)
    wait_parked(ctx, p, truth, "after writing the truth")
    return p, truth


_TGKILL = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)


def signal_main_thread(pid, sig):
    """tgkill(pid, pid, sig). A process-directed kill() sent just after a ptrace detach can be
    delivered to another thread (the main one may still have its wake-up pending), and CPython
    then runs the handler only once the main thread wakes up by itself: never, for a sleep(1000)."""
    if _TGKILL is not None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syscall(_TGKILL, pid, pid, sig) == 0:
                return
        except Exception:
            pass
    os.kill(pid, sig)


def check_alive(ctx, p, truth, what):
    """The target is not stopped or traced, and its main thread still runs Python (SIGUSR1 -> pong)."""
    problems = []
    end = time.time() + 2 * SCALE
    while True:
        bad = []
        for tid in sorted(tasks_of(p.pid)):
            st = proc_status(p.pid, tid)
            state = st.get("State", "?")
            if state[:1] in ("T", "t") or st.get("TracerPid", "0") != "0":
                bad.append("tid %d State=%s TracerPid=%s" % (tid, state, st.get("TracerPid")))
        if not bad or time.time() > end:
            break
        time.sleep(0.05)
    if p.poll() is not None:
        return ["target died after %s (rc %s)" % (what, p.returncode)]
    if bad:
        problems.append("after %s the target is still stopped or traced: %s" % (what, "; ".join(bad)))
    pong = truth["path"] + ".pong"
    try:
        os.unlink(pong)
    except OSError:
        pass
    signal_main_thread(p.pid, signal.SIGUSR1)
    end = time.time() + 5 * SCALE
    while not os.path.exists(pong):
        if time.time() > end or p.poll() is not None:
            problems.append("after %s the target did not answer SIGUSR1 within %.0fs (rc %s)"
                            % (what, 5 * SCALE, p.poll()))
            return problems
        time.sleep(0.02)
    wait_parked(ctx, p, truth, "after answering SIGUSR1")  # back in its sleep for later dumps
    return problems


# --- comparing a dump with the truth ----------------------------------------------------------
def fmt(f):
    if not isinstance(f, dict):
        return repr(f)
    return "%s (%s:%s)" % (f.get("function"), f.get("file"), f.get("line"))


def key(f):
    return (f.get("function"), f.get("file"), f.get("line"))


def parse_json(r):
    try:
        text = r.out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fail("stdout is not UTF-8 (%s): %s" % (e, r.describe()))
    try:
        return json.loads(text)
    except ValueError as e:
        raise Fail("stdout is not one JSON document (%s): %s" % (e, r.describe(True)))


def check_shape(doc, pid):
    """Schema-level problems of a dump document."""
    p = []
    if doc.get("schema") != "pymemspy.dump/1":
        p.append("schema is %r, want 'pymemspy.dump/1'" % doc.get("schema"))
    if doc.get("pid") != pid:
        p.append("pid is %r, want %d" % (doc.get("pid"), pid))
    py = doc.get("python")
    if not isinstance(py, dict) or not isinstance(py.get("version"), str) or \
            py.get("build") not in ("release", "debug", "free-threaded"):
        p.append("python is %r" % (py,))
    threads = doc.get("threads")
    if not isinstance(threads, list):
        return p + ["threads is %r, not a list" % (type(threads).__name__,)]
    for i, t in enumerate(threads):
        if not isinstance(t, dict):
            p.append("threads[%d] is not an object" % i)
            continue
        for k, typ in (("tid", int), ("interpreter", int), ("holds_gil", bool), ("idle", bool),
                       ("frames", list)):
            v = t.get(k)
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                p.append("threads[%d].%s is %r, want %s" % (i, k, v, typ.__name__))
        for j, f in enumerate(t.get("frames") or []):
            if not (isinstance(f, dict) and isinstance(f.get("function"), str) and
                    isinstance(f.get("file"), str) and isinstance(f.get("line"), int)):
                p.append("threads[%d].frames[%d] is %r" % (i, j, f))
                break
    return p


def compare_frames(dump_frames, truth_frames, spin=None):
    """Differences between a dumped stack and the truth (both innermost first)."""
    out = []
    d = list(dump_frames)
    t = list(truth_frames)
    if spin is not None:
        if not d:
            return ["no frames (want innermost %s in %s lines %d-%d)"
                    % (spin["function"], spin["file"], spin["first"], spin["last"])]
        f0 = d[0]
        if f0.get("function") != spin["function"] or f0.get("file") != spin["file"] or \
                not isinstance(f0.get("line"), int) or not spin["first"] <= f0["line"] <= spin["last"]:
            out.append("innermost frame is %s, want %s in %s lines %d-%d"
                       % (fmt(f0), spin["function"], spin["file"], spin["first"], spin["last"]))
        d, t = d[1:], t[1:]
        base = 1
    else:
        base = 0
    ndiff = 0
    for i in range(min(len(d), len(t))):
        if key(d[i]) != key(t[i]):
            ndiff += 1
            if ndiff <= 3:
                out.append("frame #%d: dump %s, interpreter %s" % (base + i, fmt(d[i]), fmt(t[i])))
    if ndiff > 3:
        out.append("... %d more differing frames" % (ndiff - 3))
    if len(d) != len(t):
        n = min(len(d), len(t))
        out.append("dump has %d frames, interpreter %d; %s"
                   % (len(d) + base, len(t) + base,
                      ("dump's extra: " + ", ".join(fmt(f) for f in d[n:n + 3])) if len(d) > len(t)
                      else ("dump lacks: " + ", ".join(fmt(f) for f in t[n:n + 3]))))
    return out


def compare_dump(doc, truth, allow_gil_holder=False, max_depth=None):
    """All the ways `doc` (a dump --json document) disagrees with the target's truth."""
    problems = check_shape(doc, truth["pid"])
    py = doc.get("python") or {}
    if isinstance(py, dict):
        if py.get("version") != truth["python"]["version"]:
            problems.append("python.version is %r, interpreter says %r"
                            % (py.get("version"), truth["python"]["version"]))
        if py.get("build") != truth["python"]["build"]:
            problems.append("python.build is %r, interpreter says %r" % (py.get("build"), truth["python"]["build"]))
    threads = [t for t in (doc.get("threads") or []) if isinstance(t, dict)]
    by_tid = {}
    for t in threads:
        if t.get("tid") in by_tid:
            problems.append("tid %s appears twice" % t.get("tid"))
        by_tid[t.get("tid")] = t
    want = dict((t["tid"], t) for t in truth["threads"])
    missing = sorted(set(want) - set(by_tid))
    extra = sorted(set(by_tid) - set(want), key=str)
    for tid in missing:
        problems.append("thread %d (%s) missing from the dump" % (tid, want[tid]["role"]))
    for tid in extra:
        f = (by_tid[tid].get("frames") or [None])[0]
        problems.append("dump has a thread %s the interpreter does not (innermost %s)" % (tid, fmt(f)))
    for tid in sorted(set(want) & set(by_tid)):
        tt, dt = want[tid], by_tid[tid]
        label = "thread %d (%s)" % (tid, tt["role"])
        if dt.get("interpreter") != 0:
            problems.append("%s: interpreter is %r, want 0" % (label, dt.get("interpreter")))
        if dt.get("holds_gil") is True and not (allow_gil_holder and tt["spin"]):
            problems.append("%s: holds_gil is true but the thread is blocked in a call that released it" % label)
        if not tt["spin"] and dt.get("idle") is False:
            problems.append("%s: idle is false but the thread is blocked (sleeping, GIL released)" % label)
        if dt.get("truncated") is True and max_depth is None:
            problems.append("%s: marked truncated (the whole stack is %d frames)" % (label, len(tt["frames"])))
        tframes = tt["frames"]
        if max_depth is not None:
            tframes = tframes[:max_depth]
            want_trunc = len(tt["frames"]) > max_depth
            if "truncated" in dt and dt.get("truncated") is not want_trunc:
                problems.append("%s: truncated is %r with --max-depth %d and a stack of %d frames"
                                % (label, dt.get("truncated"), max_depth, len(tt["frames"])))
        for p in compare_frames(dt.get("frames") or [], tframes, tt["spin"]):
            problems.append("%s: %s" % (label, p))
    holders = [t.get("tid") for t in threads if t.get("holds_gil") is True]
    if len(holders) > 1:
        problems.append("%d threads hold the GIL at once: %s" % (len(holders), holders))
    return problems


def spin_notes(doc, truth):
    notes = []
    want = dict((t["tid"], t) for t in truth["threads"])
    for t in doc.get("threads") or []:
        tt = want.get(t.get("tid")) if isinstance(t, dict) else None
        if tt is not None and tt["spin"]:
            notes.append("spinning %s holds_gil=%s idle=%s" % (tt["role"], t.get("holds_gil"), t.get("idle")))
    return notes


def expect_json_match(ctx, truth, args, allow_gil_holder=False, max_depth=None):
    r = ctx.run_bin(["dump", "--pid", str(truth["pid"]), "--json"] + args)
    if r.rc != 0:
        raise Fail("dump failed: %s" % r.describe(True))
    doc = parse_json(r)
    problems = compare_dump(doc, truth, allow_gil_holder, max_depth)
    ctx.notes.extend(spin_notes(doc, truth))
    return r, doc, problems


def fail_with(problems, r, limit=25):
    lines = problems[:limit]
    if len(problems) > limit:
        lines.append("... %d more" % (len(problems) - limit))
    raise Fail("`%s` disagrees with the interpreter:\n    %s\n    stderr: %s"
               % (r.cmd(), "\n    ".join(lines), short(r.err) or "(empty)"))


def expect_text(ctx, truth):
    """Plain `dump`: exit 0, non-empty UTF-8 naming every thread's innermost function."""
    r = ctx.run_bin(["dump", "--pid", str(truth["pid"])])
    if r.rc != 0:
        raise Fail("plain dump failed: %s" % r.describe(True))
    try:
        text = r.out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fail("plain dump's stdout is not UTF-8 (%s): %s" % (e, r.describe()))
    if not text.strip():
        raise Fail("plain dump printed nothing: %s" % r.describe())
    absent = []
    for t in truth["threads"]:
        fn = t["spin"]["function"] if t["spin"] else t["frames"][0]["function"]
        if fn not in text:
            absent.append("%s (thread %d, %s)" % (fn, t["tid"], t["role"]))
    if absent:
        raise Fail("plain dump does not name: %s\n    %s" % (", ".join(absent), r.describe(True)))


# --- cases ------------------------------------------------------------------------------------
def case_stacks(ctx, python):
    p, truth = start_truth_target(ctx, python, "stacks.py")
    r, doc, problems = expect_json_match(ctx, truth, [])
    if problems:
        fail_with(problems, r)
    expect_text(ctx, truth)
    r, doc, problems = expect_json_match(ctx, truth, ["--lock"])
    problems += check_alive(ctx, p, truth, "dump --lock")
    if problems:
        fail_with(problems, r)
    # The target is unchanged by the dumps (a dump again, after the SIGUSR1 probe).
    r, doc, problems = expect_json_match(ctx, truth, [])
    if problems:
        fail_with(problems, r)
    # --max-depth (not in the contract: only when `dump --help` offers it).
    extra = ""
    if "--max-depth" in ctx.run_bin(["dump", "--help"]).out.decode("utf-8", "replace"):
        r, doc, problems = expect_json_match(ctx, truth, ["--max-depth", "20"], max_depth=20)
        if problems:
            fail_with(problems, r)
        extra = ", --max-depth 20"
    return "%d threads, %d frames (deepest %d) match; plain, --lock%s too" % (
        len(truth["threads"]), sum(len(t["frames"]) for t in truth["threads"]),
        max(len(t["frames"]) for t in truth["threads"]), extra)


def case_spinner(ctx, python):
    p, truth = start_truth_target(ctx, python, "spinner.py")
    spinner = [t for t in truth["threads"] if t["spin"]][0]
    held = 0
    lines = []
    n = 5
    for i in range(n):
        r, doc, problems = expect_json_match(ctx, truth, [], allow_gil_holder=True)
        if problems:
            fail_with(problems, r)
        for t in doc["threads"]:
            if t["tid"] == spinner["tid"]:
                held += t["holds_gil"] is True
                lines.append(t["frames"][0]["line"])
        time.sleep(0.02)
    if held * 2 <= n:
        raise Fail("the spinning thread %d held the GIL in only %d of %d dumps (innermost lines %s)"
                   % (spinner["tid"], held, n, lines))
    expect_text(ctx, truth)
    r, doc, problems = expect_json_match(ctx, truth, ["--lock"], allow_gil_holder=True)
    problems += check_alive(ctx, p, truth, "dump --lock")
    t0 = cpu_ticks(p.pid, spinner["tid"])
    time.sleep(0.4)
    t1 = cpu_ticks(p.pid, spinner["tid"])
    if t0 is None or t1 is None or t1 <= t0:
        problems.append("after dump --lock the spinning thread stopped using CPU (ticks %s -> %s)" % (t0, t1))
    if problems:
        fail_with(problems, r)
    return "spinner held the GIL in %d/%d dumps at lines %s; sleepers exact; --lock ok" % (held, n, lines)


def case_exits(ctx, python, rounds):
    """Targets that exit (or are killed) while being dumped: 0 or 3, never a crash. Every round runs
    to its end; the failures are grouped by kind (exit code + message with the numbers blanked)."""
    base = int(os.environ.get("PMS_E2E_SEED", str(random.randrange(1 << 30))))
    modes = [["--json"], [], ["--json", "--lock"]]
    counts = {}
    bad = {}  # kind -> [count, example]
    ndumps = 0

    def complain(kind, r, tag):
        k = (kind, r.rc, re.sub(r"\d+", "N", r.err.decode("utf-8", "replace").strip()))
        if k not in bad:
            bad[k] = [0, "%s %s: %s" % (kind, tag, r.describe(True))]
        bad[k][0] += 1

    for rnd in range(rounds):
        seed = base + rnd
        ready = os.path.join(ctx.dir, "ready.%d" % rnd)
        p = python_target(ctx, python, "shortlived.py", ready, str(seed), stdin=subprocess.PIPE)
        wait_file(ctx, ready, p, "ready file")
        killer = None
        if seed % 4 == 3:  # killed by us rather than exiting by itself
            killer = threading.Timer(random.Random(seed).uniform(0.001, 0.03), killpg, (p,))
        try:
            p.stdin.write(b"go\n")
            p.stdin.close()
        except OSError:
            pass
        if killer:
            killer.start()
        try:
            i = 0
            while True:
                ctx.check_time("dumping an exiting target")
                try:
                    gone = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
                except ChildProcessError:
                    gone = True
                args = modes[i % len(modes)]
                r = ctx.run_bin(["dump", "--pid", str(p.pid)] + args)
                i += 1
                ndumps += 1
                counts[r.rc] = counts.get(r.rc, 0) + 1
                tag = "(seed %d, %s)" % (seed, "target already exited: a zombie" if gone else "dump %d" % i)
                if gone and r.rc != EXIT_NOPROC:
                    complain("want exit 3 for an exited target", r, tag)
                elif r.rc not in (EXIT_OK, EXIT_NOPROC):
                    complain("want exit 0 or 3", r, tag)
                elif r.rc == EXIT_NOPROC:
                    if not r.err.strip() or r.out.strip():
                        complain("exit 3 wants a message on stderr and nothing on stdout", r, tag)
                elif "--json" in args:
                    try:
                        shape = check_shape(parse_json(r), p.pid)
                    except Fail as e:
                        shape = [str(e).split("\n")[0]]
                    if shape:
                        complain("exit 0 with a bad document: " + "; ".join(shape)[:300], r, tag)
                if gone or i > 300:
                    break
        finally:
            if killer:
                killer.cancel()
            killpg(p)
            p.wait()
        if not os.path.exists("/proc/%d" % p.pid):  # (unless the pid was reused already)
            r = ctx.run_bin(["dump", "--pid", str(p.pid), "--json"])
            ndumps += 1
            counts[r.rc] = counts.get(r.rc, 0) + 1
            if r.rc != EXIT_NOPROC and not os.path.exists("/proc/%d" % p.pid):
                complain("want exit 3 for a reaped pid", r, "(seed %d)" % seed)
    summary = "%d rounds, %d dumps, exit codes %s (PMS_E2E_SEED=%d)" % (
        rounds, ndumps, ", ".join("%s:%d" % kv for kv in sorted(counts.items())), base)
    if bad:
        raise Fail(summary + "; %d kinds of failure:\n    " % len(bad) + "\n    ".join(
            "[%dx] %s" % (n, ex) for n, ex in sorted(bad.values(), key=lambda v: -v[0])))
    return summary


def expect_error(ctx, args, want_rc, what, must_mention=None, user=None):
    r = ctx.run_bin(args, user=user)
    bad = []
    if r.rc != want_rc:
        bad.append("want exit %d" % want_rc)
    if r.out.strip():
        bad.append("want nothing on stdout")
    if not r.err.strip():
        bad.append("want a message on stderr")
    elif must_mention and not re.search(must_mention[0], r.err.decode("utf-8", "replace")):
        bad.append("want the message to mention %s" % must_mention[1])
    if bad:
        return ["%s: %s: %s" % (what, ", ".join(bad), r.describe(True))]
    return []


def free_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def case_no_such_pid(ctx):
    problems = []
    for pid in (free_pid(), 99999999):
        if os.path.exists("/proc/%d" % pid):
            continue
        for extra in ([], ["--json"], ["--json", "--lock"]):
            problems += expect_error(ctx, ["dump", "--pid", str(pid)] + extra, EXIT_NOPROC,
                                     "pid %d (no such process)" % pid)
    if problems:
        raise Fail("\n    ".join(problems))
    return "exit 3 with a message"


def case_not_python(ctx, fake_name):
    argv = ["sleep", "100"]
    if fake_name:
        fake = os.path.join(ctx.dir, "python3.11")
        shutil.copy(shutil.which("sleep"), fake)
        argv = [fake, "100"]
    p = ctx.spawn(argv, name="sleep")
    end = time.time() + 5
    while True:  # until exec is done and the image is mapped
        try:
            if os.readlink("/proc/%d/exe" % p.pid) == os.path.realpath(shutil.which(argv[0]) or argv[0]):
                break
        except OSError:
            pass
        if time.time() > end:
            raise Fail("%s did not start" % argv[0])
        time.sleep(0.01)
    time.sleep(0.05)
    problems = []
    for extra in ([], ["--json"]):
        problems += expect_error(ctx, ["dump", "--pid", str(p.pid)] + extra, EXIT_NOTPY,
                                 "%s (not Python)" % " ".join(argv))
    if problems:
        raise Fail("\n    ".join(problems))
    return "exit 4 with a message"


def case_unsupported(ctx, python, short_version):
    ready = os.path.join(ctx.dir, "ready")
    p = python_target(ctx, python, "sleeper.py", ready)
    wait_file(ctx, ready, p, "ready file")
    problems = []
    mention = (r"(?<![\d.])" + re.escape(short_version) + r"(?![\d])", "the version " + short_version)
    for extra in ([], ["--json"]):
        problems += expect_error(ctx, ["dump", "--pid", str(p.pid)] + extra, EXIT_UNSUPPORTED,
                                 "Python %s" % short_version, must_mention=mention)
    if problems:
        raise Fail("\n    ".join(problems))
    return "exit 5 naming %s" % short_version


def nobody_can_run(ctx):
    """Skip unless the nobody user can run the binary."""
    r = subprocess.run(NOBODY + [BIN, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode == 0:
        return BIN
    raise Skip("user nobody cannot run %s (exit %d: %s)" % (BIN, r.returncode, short(r.stderr, 200)))


def first_interpreter(prefer=("3.12.1", "3.11.7", "3.13.0"), only=False):
    have = dict((i, p) for i, p in INTERPRETERS if os.access(p, os.X_OK))
    for i in prefer:
        if i in have:
            return i, have[i]
    if only:
        raise Skip("none of %s installed" % ", ".join(prefer))
    for i, p in INTERPRETERS:
        if i in have:
            return i, p
    raise Skip("no supported interpreter installed")


def case_no_privilege(ctx):
    if not shutil.which("setpriv"):
        raise Skip("setpriv not installed")
    nobody_can_run(ctx)
    ver, python = first_interpreter()
    ready = os.path.join(ctx.dir, "ready")
    p = python_target(ctx, python, "sleeper.py", ready)
    wait_file(ctx, ready, p, "ready file")
    problems = []
    for extra in ([], ["--json"], ["--lock"]):
        problems += expect_error(ctx, ["dump", "--pid", str(p.pid)] + extra, EXIT_PRIV,
                                 "user nobody vs root's Python %s" % ver,
                                 must_mention=(r"CAP_SYS_PTRACE", "CAP_SYS_PTRACE"),
                                 user=NOBODY)
    if problems:
        raise Fail("\n    ".join(problems))
    return "exit 6 naming CAP_SYS_PTRACE (Python %s)" % ver


def case_same_user(ctx):
    """Not root, but the target is our own process: ptrace rights without any capability."""
    if not shutil.which("setpriv"):
        raise Skip("setpriv not installed")
    nobody_can_run(ctx)
    # /root is not searchable by nobody, so pyenv's interpreters cannot start as nobody.
    ver, python = first_interpreter(("deb-3.11", "deb-3.11d"), only=True)
    os.chmod(ctx.dir, 0o777)
    p, truth = start_truth_target(ctx, python, "stacks.py", user=NOBODY)
    r = ctx.run_bin(["dump", "--pid", str(p.pid), "--json"], user=NOBODY)
    if r.rc != 0:
        raise Fail("user nobody dumping its own Python %s: %s" % (ver, r.describe(True)))
    problems = compare_dump(parse_json(r), truth)
    if problems:
        fail_with(problems, r)
    return "user nobody dumps its own Python %s process" % ver


USAGE_ERRORS = [
    [],
    ["no-such-command"],
    ["dump"],
    ["dump", "--pid"],
    ["dump", "--pid", ""],
    ["dump", "--pid", "abc"],
    ["dump", "--pid", "12x"],
    ["dump", "--pid", "0"],
    ["dump", "--pid", "-5"],
    ["dump", "--pid", "99999999999999999999"],
    ["dump", "--bogus"],
    ["dump", "--pid", "1", "stray"],
    ["dump", "--json"],
    ["dump", "--pid", "1", "--max-depth", "0"],
    ["dump", "--pid", "1", "--max-depth", "x"],
]


def case_usage(ctx):
    problems = []
    for args in USAGE_ERRORS:
        r = ctx.run_bin(args)
        bad = []
        if r.rc != EXIT_USAGE:
            bad.append("want exit 2")
        if r.out.strip():
            bad.append("want nothing on stdout")
        if not r.err.strip():
            bad.append("want a message on stderr")
        if bad:
            problems.append("%s: %s" % (", ".join(bad), r.describe(True)))
    for args in (["--help"], ["dump", "--help"]):
        r = ctx.run_bin(args)
        if r.rc != 0 or not r.out.strip():
            problems.append("want exit 0 and help on stdout: %s" % r.describe(True))
    if problems:
        raise Fail("\n    ".join(problems))
    return "%d bad command lines exit 2; --help exits 0" % len(USAGE_ERRORS)


def case_target_only(ctx, python, script):
    """--targets-only: the target's own truth is complete and sane (no binary involved)."""
    p, truth = start_truth_target(ctx, python, script)
    roles = dict((t["role"], t) for t in truth["threads"])
    want = {"stacks.py": ["main", "nested", "methods", "local_class", "lambda", "listcomp", "dictcomp",
                          "genexpr", "generator", "async", "recursion", "event", "unicode"],
            "spinner.py": ["main", "spinner", "sleeper", "waiter"]}[script]
    problems = []
    if sorted(roles) != sorted(want):
        problems.append("roles %s, want %s" % (sorted(roles), sorted(want)))
    new = truth["python"]["hexversion"] >= 0x030B0000
    for t in truth["threads"]:
        top = t["frames"][0]["function"] if t["frames"] else None
        if t["spin"]:
            if top != t["spin"]["function"]:
                problems.append("%s: innermost %s" % (t["role"], top))
        elif top not in ("park", "wait", "Condition.wait"):
            problems.append("%s: innermost %s" % (t["role"], top))
    if "recursion" in roles:
        n = sum(1 for f in roles["recursion"]["frames"] if f["function"] == "recurse")
        if n != truth["recursion_depth"] + 1:
            problems.append("recursion: %d recurse frames" % n)
    if "unicode" in roles:
        names = [f["function"] for f in roles["unicode"]["frames"]]
        for n in ("\U00020000", "\u51fd\u6570", ("Kl\u00e4sse.m\u00e9thode" if new else "m\u00e9thode")):
            if n not in names:
                problems.append("unicode: %s not in %s" % (n, names))
    if "methods" in roles and new:
        names = [f["function"] for f in roles["methods"]["frames"]]
        if "Outer.Inner.method" not in names:
            problems.append("methods: no Outer.Inner.method in %s" % names)
    problems += check_alive(ctx, p, truth, "writing the truth")
    if problems:
        raise Fail("; ".join(problems))
    return "%d threads, Python %s %s" % (len(truth["threads"]), truth["python"]["version"], truth["python"]["build"])


# --- the runner ---------------------------------------------------------------------------------
class Case:
    def __init__(self, name, fn, args=(), timeout=60.0, needs=None):
        self.name, self.fn, self.args, self.timeout, self.needs = name, fn, args, timeout, needs


def all_cases():
    cases = []
    if OPTS.targets_only:
        for iid, path in INTERPRETERS:
            for script in ("stacks.py", "spinner.py"):
                cases.append(Case("target/%s/%s" % (script[:-3], iid), case_target_only, (path, script),
                                  needs=path))
        return cases
    rounds = 6 if OPTS.subset else 10
    for iid, path in INTERPRETERS:
        cases.append(Case("dump/spinner/" + iid, case_spinner, (path,), needs=path))
        cases.append(Case("exits-mid-dump/" + iid, case_exits, (path, rounds), timeout=90, needs=path))
        cases.append(Case("dump/stacks/" + iid, case_stacks, (path,), needs=path))
    for iid, path, sv in UNSUPPORTED:
        cases.append(Case("unsupported/" + iid, case_unsupported, (path, sv), needs=path))
    cases += [
        Case("no-such-pid", case_no_such_pid),
        Case("not-python/sleep", case_not_python, (False,)),
        Case("not-python/named-python3.11", case_not_python, (True,)),
        Case("no-privilege", case_no_privilege),
        Case("unprivileged-same-user", case_same_user),
        Case("usage", case_usage),
    ]
    if OPTS.subset:
        cases = [c for c in cases if c.name in SUBSET]
    if OPTS.only:
        pats = OPTS.only
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in pats)]
    return cases


def run_case(case, ctx):
    ctx.start()
    if case.needs and not os.access(case.needs, os.X_OK):
        return "SKIP", "%s not installed" % case.needs
    try:
        return "PASS", case.fn(ctx, *case.args) or ""
    except Fail as e:
        return "FAIL", str(e)
    except Skip as e:
        return "SKIP", str(e)
    except Exception as e:  # a harness bug must not hide as a pass
        import traceback
        return "FAIL", "harness error: %s\n%s" % (e, traceback.format_exc())
    finally:
        ctx.cleanup()


def report(status, case, detail, ctx, elapsed):
    with PRINT_LOCK:
        line = "%s %s: %s" % (status, case.name, detail.replace("\n", "\n  ") if detail else "")
        if OPTS.verbose:
            line += "  [%.1fs]" % elapsed
        print(line.rstrip())
        if OPTS.verbose and ctx is not None:
            notes = sorted(set(ctx.notes))
            if notes:
                print("    notes: " + "; ".join(notes))
            for entry in ctx.log:
                print("    | " + entry.replace("\n", "\n    | "))
        sys.stdout.flush()


def find_binary():
    b = os.environ.get("PMS_BIN") or "./pymemspy"
    cands = [b] if os.path.isabs(b) else [os.path.abspath(b), os.path.join(REPO, b)]
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.realpath(c) if os.path.islink(c) else c
    return None


def main():
    global OPTS, BIN, SCALE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", action="store_true", help="a representative subset (sanitizer runs)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run the cases whose name matches this glob or contains it (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every command, its exit code and stderr")
    ap.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("PMS_E2E_JOBS", "3")))
    ap.add_argument("--keep", action="store_true", help="keep each case's temporary directory")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--targets-only", action="store_true",
                    help="check the targets' own truth files on every interpreter (no binary needed)")
    OPTS = ap.parse_args()
    SCALE = float(os.environ.get("PMS_E2E_TIMEOUT_SCALE", "3" if OPTS.subset else "1"))
    cases = all_cases()
    if OPTS.list:
        for c in cases:
            print(c.name)
        return 0
    if not OPTS.targets_only:
        BIN = find_binary()
        if BIN is None:
            print("FAIL setup: no executable pymemspy at %s (set PMS_BIN)"
                  % (os.environ.get("PMS_BIN") or "./pymemspy"))
            print("0 passed, 1 failed")
            return 1
        # Run a private copy: a rebuild during the run must not change the binary under test.
        snap_dir = tempfile.mkdtemp(prefix="pms-e2e-bin-")
        os.chmod(snap_dir, 0o755)
        snap = os.path.join(snap_dir, "pymemspy")
        shutil.copy2(BIN, snap)
        os.chmod(snap, 0o755)
        atexit.register(shutil.rmtree, snap_dir, True)
        print("binary: %s (run from a copy, %s)" % (BIN, snap))
        BIN = snap
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for iid, path in INTERPRETERS + [(u[0], u[1]) for u in UNSUPPORTED]:
        if not os.access(path, os.X_OK) and any(c.needs == path for c in cases):
            print("note: interpreter %s (%s) not installed: its cases are skipped" % (iid, path))
    t_start = time.time()
    signal.signal(signal.SIGTERM, _interrupt)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, OPTS.jobs))
    futures = {}
    try:
        run_all(pool, cases, futures, counts)
    except KeyboardInterrupt:
        # Interrupted: kill every target and binary still running, then leave without waiting.
        for f, (c, ctx) in list(futures.items()):
            ctx.killed = True
            ctx.kill_all()
            if not OPTS.keep:
                shutil.rmtree(ctx.dir, ignore_errors=True)
        print("interrupted")
        print("%d passed, %d failed" % (counts["PASS"], counts["FAIL"] + 1))
        sys.stdout.flush()
        if BIN and os.path.basename(os.path.dirname(BIN)).startswith("pms-e2e-bin-"):
            shutil.rmtree(os.path.dirname(BIN), ignore_errors=True)
        os._exit(1)
    pool.shutdown(wait=True)
    summary = "%d passed, %d failed" % (counts["PASS"], counts["FAIL"])
    if counts["SKIP"]:
        summary += ", %d skipped" % counts["SKIP"]
    if OPTS.verbose:
        print("(%.1fs)" % (time.time() - t_start))
    print(summary)
    return 1 if counts["FAIL"] else 0


def run_all(pool, cases, futures, counts):
    for c in cases:
        ctx = Ctx(c.name, c.timeout * SCALE)
        futures[pool.submit(run_case, c, ctx)] = (c, ctx)
    abandoned = set()
    while futures:
        done, _ = concurrent.futures.wait(list(futures), timeout=0.5,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        for f in done:
            c, ctx = futures.pop(f)
            if f in abandoned:
                continue
            status, detail = f.result()
            counts[status] += 1
            report(status, c, detail, ctx, time.time() - ctx.started)
        # Watchdog: a case far past its deadline is failed and its processes are killed.
        now = time.time()
        for f, (c, ctx) in list(futures.items()):
            if f not in abandoned and ctx.started and now > ctx.deadline + 15:
                ctx.killed = True
                ctx.kill_all()
                abandoned.add(f)
                counts["FAIL"] += 1
                report("FAIL", c, "case hung past its %.0fs deadline; its processes were killed"
                       % ctx.timeout, ctx, now - ctx.started)


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


if __name__ == "__main__":
    sys.exit(main())
