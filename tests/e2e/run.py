#!/usr/bin/env python3
"""End-to-end tests of `pymemspy dump` and `pymemspy record` against real CPython processes.

    python3 tests/e2e/run.py [--subset] [--only PATTERN] [-v] [-j N] [--keep] [--list] [--targets-only]

The binary comes from $PMS_BIN (default ./pymemspy, then the repository's ./pymemspy).

dump: each target under tests/targets/ (stacks.py, spinner.py, on pmstruth.py) parks its threads at known
places and writes a "truth" file with what the interpreter itself reports (sys._current_frames() +
traceback.extract_stack(), qualnames on 3.11+, native thread ids); the cases compare `pymemspy dump --json`
with it thread by thread (matched by native tid) and frame by frame.

record (--events growth): the leak_*.py targets (on pmsgrowth.py) leak from one known function (64 KiB
bytes, ctypes buffers, a growing array.array, os.read() buffers filled by the kernel, or strdup() in
native threads) while another function churns small objects; each writes its truth (the leaking
function, its allocating line and stack) and a timeline of its own RSS. `record --duration 5 --json`
must name the leaking function as the top site with the same line and stack, and its bytes must be
within 25% of the RSS the target gained over the recording. churn.py (no leak, deterministic output)
checks that the target's output is the same with and without a recording, and that 20 attach/detach
cycles in a row leave it running normally. Also: SIGINT/SIGTERM stop with a report, the target
exiting or killed mid-record ends it with a report (exit 0) and a message, and the refusals (exit
2, 3, 4, 5, 6).

record files (-o FILE, man/pymemspy-record.5): `report FILE --json` gives the document `record --json`
printed (but for truncated/recording/profiler), the text report leads with the leak, the file is 0600,
whole (its framing and CRCs read independently here) and within 1 MB a minute; a recorder killed with
SIGKILL leaves a file that reads as truncated, losing at most its last second, and the target untraced;
-o refuses an existing file without --force and any symlink; a full disk (a 64 KiB tmpfs, root only)
keeps record's own report whole and the file readable; `report` on missing, foreign, cut (every
1 KiB and odd places), zero-tailed and damaged files exits 1, 7 or 0 as documented, never crashing;
`report --diff` of a slow and a fast run of leak_paced.py puts the leak first with a positive change.

record --events malloc|pymalloc (uprobes on the allocator, allocations sampled by bytes and weighted
1/p): alloc_known.py allocates known sizes from known functions once pymemspy is attached (keep_*()
keeps bytes objects, churn_*() makes and drops them; 4033-byte objects through libc's malloc, or
133-byte ones through pymalloc with --rate 4096) and writes exactly what it allocated and kept: the
top live site must be the keeping function (line and stack), its live and allocated estimates and the
churning function's allocated within 4 sigma of the truth (sigma from the known sizes: Var = sum
s^2 (1-p)/p; the reported 95% half-widths within 2x of 1.96 sigma), the churn's live near 0;
Debian's python3.11 inlines pymalloc's fast path (coverage null): only upper bounds hold there.
alloc_nogil.py calls malloc() through ctypes without the GIL in one thread and grows a bytearray
(realloc) in another: each is charged to its function and its thread (threads[].tid). A target
SIGKILLed mid-record: exit 0, a message, the report with the keeping site on top. --events nope and
--rate 10 are usage errors (exit 2). --max-overhead PCT: alloc_steady.py mallocs 5000 times a second from
before the attach; sampling.overhead predicts the slowdown (trap cost x call rate), 0.01 stops the
probes within 3 s (alloc_calls stop growing, the recording goes on, exit 0), 100 only where predicted
above; with growth or survivors it is a usage error.

Host features: `doctor --json` runs once per run (doctor/json checks its schema, the checks, modes,
costs and host, and that the watchpoint self-test, its trap cost and the survivors mode agree). Cases
needing a feature doctor says the host lacks print `SKIP case: <feature> unavailable on this host
(<evidence>)`: every record/survivors/* case needs watchpoints that trap; where they do not,
record/survivors/refused checks survivors is refused at once (exit 8, naming watchpoints). A doctor
without the check leaves the feature unknown and the cases run.

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
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

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
    "record/large/3.12.1", "record/read/deb-3.11d", "record/target-exits/3.12.1", "record/no-such-pid",
    "record/unsupported/3.7.16", "record/usage", "record/file/roundtrip/3.12.1",
    "record/malloc/known/3.12.1", "record/pymalloc/known/3.13.0", "record/survivors/3.12.1",
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

    def spawn(self, argv, stdin=None, name="target", env_extra=None):
        """Start a process in its own session; its stdout/stderr go to files in the case dir."""
        self.check_time("starting " + name)
        n = len(self.procs)
        outp = os.path.join(self.dir, "%s.%d.out" % (name, n))
        errp = os.path.join(self.dir, "%s.%d.err" % (name, n))
        with open(outp, "wb") as o, open(errp, "wb") as e:
            env = clean_env()
            env.update(env_extra or {})
            p = subprocess.Popen(argv, stdin=stdin, stdout=o, stderr=e, cwd=self.dir, env=env,
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
        return self.finish_bin(self.start_bin(args, user=user), timeout)

    def start_bin(self, args, user=None):
        """Start the binary in its own session (stdout and stderr to files); finish it with finish_bin."""
        self.check_time("about to run pymemspy " + " ".join(args))
        argv = ([] if user is None else list(user)) + [BIN] + list(args)
        n = len(self.procs)
        outp = os.path.join(self.dir, "pymemspy.%d.out" % n)
        errp = os.path.join(self.dir, "pymemspy.%d.err" % n)
        try:
            with open(outp, "wb") as o, open(errp, "wb") as e:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e, cwd=self.dir,
                                     start_new_session=True)
        except OSError as e:
            raise Fail("cannot run `%s`: %s" % (" ".join(argv), e))
        p.out_path, p.err_path, p.argv, p.t0 = outp, errp, argv, time.time()
        with self.lock:
            self.procs.append(p)
        return p

    def bin_stderr(self, p):
        try:
            with open(p.err_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def finish_bin(self, p, timeout=20.0):
        """Wait for a binary started by start_bin (at most `timeout` s, scaled); judge how it ended."""
        limit = max(1.0, min(timeout * SCALE, self.remaining()))
        try:
            p.wait(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            killpg(p)
            p.wait()
            timed_out = True
        t_end = time.monotonic()
        with open(p.out_path, "rb") as f:
            out = f.read()
        r = Run(p.argv, "timeout" if timed_out else p.returncode, out, self.bin_stderr(p), time.time() - p.t0)
        r.t_end = t_end
        if timed_out:
            raise Fail("pymemspy hung (killed after %.0fs): %s" % (limit, r.describe(True)))
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


# --- host features ------------------------------------------------------------------------------
# Some cases need what not every host has (hardware watchpoints that trap, for --events survivors).
# `doctor --json` self-tests them: it runs once per run (the first case that asks, before its
# deadline starts) and each such case SKIPs where its feature is missing, with doctor's evidence.
# A binary whose doctor lacks the check leaves the feature unknown: the case runs (old behaviour).
HOST_FEATURES = {  # feature: (doctor's check, what the SKIP line calls it)
    "watchpoints": ("selftest:watchpoint", "hardware watchpoints"),
}
EXIT_HOST = 8
_HOST_LOCK = threading.Lock()
_HOST_DOCTOR = []  # [(document or None, why not)] once probed


def host_doctor():
    """`doctor --json` of the binary under test, run once per run: (document, "") or (None, why)."""
    with _HOST_LOCK:
        if not _HOST_DOCTOR:
            doc, why = None, ""
            try:
                r = subprocess.run([BIN, "doctor", "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=60 * SCALE, start_new_session=True)
                try:
                    doc = json.loads(r.stdout.decode("utf-8"))
                    if not isinstance(doc, dict):
                        doc, why = None, "doctor --json printed no object (exit %d)" % r.returncode
                except ValueError:
                    why = "doctor --json printed no JSON (exit %d): %s" % (r.returncode, short(r.stderr, 300))
            except (OSError, subprocess.SubprocessError) as e:
                why = "doctor --json failed: %s" % e
            _HOST_DOCTOR.append((doc, why))
        return _HOST_DOCTOR[0]


def host_feature(feature):
    """(True, evidence) where doctor's self-test of `feature` passed, (False, evidence) where it
    failed, (None, why) where unknown (no such check: an older binary; or doctor did not answer)."""
    check = HOST_FEATURES[feature][0]
    doc, why = host_doctor()
    if doc is None:
        return None, why
    for c in doc.get("checks") or []:
        if isinstance(c, dict) and c.get("name") == check:
            return c.get("ok") is True, "%s: %s" % (check, c.get("detail") or c.get("status"))
    return None, "doctor --json has no %s check" % check


def host_missing(features):
    """The SKIP detail for the first of `features` this host lacks, or None (all there or unknown)."""
    for f in features:
        ok, evidence = host_feature(f)
        if ok is False:
            return "%s unavailable on this host (%s)" % (HOST_FEATURES[f][1], evidence)
    return None


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


def thread_states(pid):
    """Per thread: state, pending and blocked signals, wait channel and system call (for failures)."""
    out = []
    for tid in sorted(tasks_of(pid)):
        st = proc_status(pid, tid)
        try:
            with open("/proc/%d/task/%d/wchan" % (pid, tid)) as f:
                wchan = f.read().strip()
            with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
                call = " ".join(f.read().split()[:2])
        except OSError:
            wchan = call = "?"
        out.append("%d %s pnd=%s shd=%s blk=%s wchan=%s syscall=%s" % (
            tid, st.get("State", "?")[:1], st.get("SigPnd"), st.get("ShdPnd"), st.get("SigBlk"), wchan, call))
    return out


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
            problems.append("after %s the target did not answer SIGUSR1 within %.0fs (rc %s); threads: %s"
                            % (what, 5 * SCALE, p.poll(), "; ".join(thread_states(p.pid))))
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


DOCTOR_COSTS = ("uprobe_trap_ns", "uretprobe_trap_ns", "watchpoint_trap_ns")
DOCTOR_MODES = ("dump", "record --events growth", "record --events malloc", "record --events pymalloc",
                "record --events survivors")
DOCTOR_SELFTESTS = ("selftest:tracepoint", "selftest:uprobe", "selftest:watchpoint")


def positive(v):
    return is_num(v) and v > 0


def doctor_problems(doc, rc):
    """Schema and consistency problems of a `doctor --json` document (pymemspy.doctor/1) that exited rc."""
    p = []
    if doc.get("schema") != "pymemspy.doctor/1":
        p.append("schema is %r, want 'pymemspy.doctor/1'" % doc.get("schema"))
    for k in ("kernel", "machine"):
        if not isinstance(doc.get(k), str) or not doc[k]:
            p.append("%s is %r" % (k, doc.get(k)))
    if not is_int(doc.get("euid")):
        p.append("euid is %r" % (doc.get("euid"),))
    checks, byname = doc.get("checks"), {}
    if not isinstance(checks, list) or not checks:
        p.append("checks is %r, want a non-empty list" % (checks,))
        checks = []
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("ok"), bool) or \
                not all(isinstance(c.get(k), str) for k in ("status", "detail", "advice")):
            p.append("checks[%d] is %r, want {name, ok, status, detail, advice}" % (i, c))
            continue
        if c["name"] in byname:
            p.append("checks has %s twice" % c["name"])
        byname[c["name"]] = c
        if not c["ok"] and not c["detail"]:
            p.append("check %s failed with no detail (its evidence)" % c["name"])
    for name in DOCTOR_SELFTESTS:
        if name not in byname:
            p.append("no check %s" % name)
    if not isinstance(doc.get("capabilities"), dict):
        p.append("capabilities is %r" % (doc.get("capabilities"),))
    modes, bymode = doc.get("modes"), {}
    if not isinstance(modes, list):
        p.append("modes is %r, want a list" % (modes,))
        modes = []
    for i, m in enumerate(modes):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("ok"), bool) or \
                not isinstance(m.get("reason"), str) or m.get("blocked_by") not in (None, "host", "privilege"):
            p.append("modes[%d] is %r, want {name, ok, reason, blocked_by: null|host|privilege, cost: str}" % (i, m))
            continue
        if not isinstance(m.get("cost"), str):
            p.append("mode %s: cost is %r, want a string" % (m["name"], m.get("cost", "absent")))
        if m["ok"] != (m["blocked_by"] is None):
            p.append("mode %s: ok %r but blocked_by %r" % (m["name"], m["ok"], m["blocked_by"]))
        bymode[m["name"]] = m
    for name in DOCTOR_MODES:
        if name not in bymode:
            p.append("no mode %r" % name)
    costs = doc.get("costs")
    if not isinstance(costs, dict):
        p.append("costs is %r, want {%s}" % (costs, ", ".join(DOCTOR_COSTS)))
        costs = {}
    for k in DOCTOR_COSTS:
        if k not in costs:
            p.append("costs has no %s" % k)
        elif costs[k] is not None and not positive(costs[k]):
            p.append("costs.%s is %r, want a positive number or null" % (k, costs[k]))
    host = doc.get("host")
    if not isinstance(host, dict) or not isinstance(host.get("cpu_model"), str) or not host["cpu_model"] or \
            not isinstance(host.get("hypervisor"), bool):
        p.append("host is %r, want {cpu_model: str, hypervisor: bool}" % (host,))
    want_rc = EXIT_HOST if any(m["blocked_by"] == "host" for m in bymode.values()) else \
        EXIT_PRIV if any(m["blocked_by"] == "privilege" for m in bymode.values()) else EXIT_OK
    if doc.get("exit_code") != rc or rc != want_rc:
        p.append("exit %s, exit_code %r; the modes want %d" % (rc, doc.get("exit_code"), want_rc))
    # consistency: the watchpoint self-test, its cost and the survivors mode say the same thing
    wp, up = byname.get("selftest:watchpoint"), byname.get("selftest:uprobe")
    surv, growth = bymode.get("record --events survivors"), bymode.get("record --events growth")
    if wp is not None and "watchpoint_trap_ns" in costs:
        if wp["ok"] != positive(costs["watchpoint_trap_ns"]):
            p.append("selftest:watchpoint ok %r but costs.watchpoint_trap_ns %r" % (wp["ok"], costs["watchpoint_trap_ns"]))
    if wp is not None and surv is not None and growth is not None:
        if surv["ok"] != (growth["ok"] and wp["ok"]):
            p.append("survivors mode ok %r, but growth ok %r and selftest:watchpoint ok %r"
                     % (surv["ok"], growth["ok"], wp["ok"]))
        if not wp["ok"] and surv["blocked_by"] not in ("host",) and growth["ok"]:
            p.append("watchpoints do not trap but the survivors mode is blocked_by %r, want 'host'"
                     % surv["blocked_by"])
    if up is not None and up["ok"] and "uprobe_trap_ns" in costs and not positive(costs["uprobe_trap_ns"]):
        p.append("selftest:uprobe passed but costs.uprobe_trap_ns is %r" % (costs["uprobe_trap_ns"],))
    return p


def case_doctor_json(ctx):
    """doctor --json: the checks (the watchpoint self-test among them), the modes (survivors among
    them, each with its cost), the measured trap costs and the host; all consistent, and its exit
    status that of the text report."""
    r = ctx.run_bin(["doctor", "--json"], timeout=60)
    doc = parse_json(r)
    if not isinstance(doc, dict):
        raise Fail("the document is not an object: %s" % r.describe(True))
    problems = doctor_problems(doc, r.rc)
    t = ctx.run_bin(["doctor"], timeout=60)
    if t.rc != r.rc:
        problems.append("`doctor` exits %s, `doctor --json` %s" % (t.rc, r.rc))
    if b"survivors" not in t.out:
        problems.append("the text report does not name the survivors mode")
    if problems:
        raise Fail("\n    ".join(problems[:25]) + "\n    " + r.describe(True))
    checks = dict((c["name"], c) for c in doc["checks"])
    wp = checks["selftest:watchpoint"]
    return "exit %d; watchpoints %s (%s); costs %s; %s%s" % (
        r.rc, "trap" if wp["ok"] else "do not trap", wp["detail"],
        " ".join("%s=%s" % (k, doc["costs"][k]) for k in DOCTOR_COSTS), doc["host"]["cpu_model"],
        " (hypervisor)" if doc["host"]["hypervisor"] else "")


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


# --- record: targets that know how much they grow, and where ------------------------------------
# The growth targets (leak_*.py, churn.py, on pmsgrowth.py) write a timeline of their own RSS
# ("MONOTONIC_TIME RSS PROGRESS" every 50 ms); a recording that ended at monotonic time T after D
# seconds covers [T - D, T] of that timeline. pymemspy's top site must name the leaking function,
# and its bytes must be within RECORD_TOLERANCE of the RSS the target itself gained in that window.
RECORD_DURATION = 5.0
RECORD_TOLERANCE = 0.25
NO_PY_THREAD = "<no python thread>"  # growth in threads Python does not know
STOP_MESSAGE = re.compile(r"exit|ended|gone|terminat|finish", re.I)


NO_SURVIVOR = "<pymalloc, no survivor>"  # survivors: pool growth that no sampled object took


def is_special(name):
    """Sites with no Python frame to name ("<no python thread>"; "<no python frame>" for a thread
    with no frame yet or any more; survivors' "<pymalloc, no survivor>"): no file, line or stack
    required."""
    return isinstance(name, str) and (name.startswith("<no python") or name == NO_SURVIVOR)


class Timeline:
    def __init__(self, path):
        self.rows = []
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                try:
                    self.rows.append((float(parts[0]), int(parts[1]), int(parts[2])))
                except ValueError:
                    pass
        self.rows.sort()

    def _at(self, t, col):
        rows = self.rows
        if not rows:
            return None
        if t <= rows[0][0]:
            return rows[0][col]
        if t >= rows[-1][0]:
            return rows[-1][col]
        lo, hi = 0, len(rows) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if rows[mid][0] <= t:
                lo = mid
            else:
                hi = mid
        (t0, *a), (t1, *b) = rows[lo], rows[hi]
        v0, v1 = a[col - 1], b[col - 1]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v0

    def rss(self, t):
        return self._at(t, 1)

    def progress(self, t):
        return self._at(t, 2)

    def covers(self, t0, t1, slack=0.2):
        return bool(self.rows) and self.rows[0][0] <= t0 + slack and self.rows[-1][0] >= t1 - slack


def mb(n):
    return "%.1f MB" % (n / 1e6) if n is not None else "?"


def start_growth_target(ctx, python, script, *args):
    """Start a leak_*.py target; return (proc, truth) once it is warmed up and wrote its truth."""
    truth_path = os.path.join(ctx.dir, "truth.json")
    timeline = os.path.join(ctx.dir, "timeline")
    p = python_target(ctx, python, script, truth_path, timeline, *[str(a) for a in args])
    wait_file(ctx, truth_path, p, "truth file")
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    if not truth.get("leak", {}).get("stack") and truth["leak"].get("line"):
        raise Fail("target wrote no stack of its leaking call: %s" % truth)
    return p, truth


def start_churn_target(ctx, python, rounds, pace_ms=15, name="target"):
    """Start churn.py; return (proc, ready_path, timeline_path) once it is ready and waits for 'go'."""
    ready = os.path.join(ctx.dir, "ready.%d" % len(ctx.procs))
    timeline = os.path.join(ctx.dir, "timeline.%d" % len(ctx.procs))
    p = python_target(ctx, python, "churn.py", ready, timeline, str(rounds), str(pace_ms),
                      stdin=subprocess.PIPE, name=name)
    wait_file(ctx, ready, p, "ready file")
    return p, timeline


def send_line(p, line=b"go\n"):
    try:
        p.stdin.write(line)
        p.stdin.flush()
    except (OSError, ValueError):
        pass


def wait_target_exit(ctx, p, timeout):
    try:
        p.wait(timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        raise Fail("target did not finish within %.0fs\n    %s" % (timeout * SCALE, ctx.proc_output(p)))
    with open(p.out_path, "rb") as f:
        out = f.read()
    with open(p.err_path, "rb") as f:
        err = f.read()
    return p.returncode, out, err


def bpf_attachments(pid):
    """How many BPF links and perf events process `pid` holds open."""
    n = 0
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return 0
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if "bpf_link" in link or "bpf-link" in link or "[perf_event]" in link:
            n += 1
    return n


def wait_attached(ctx, p, timeout=5.0):
    """After start_bin(record ...): until pymemspy says it is recording, or holds BPF links and
    perf events whose number stayed the same for 150 ms (it attached everything). False if it exited
    or `timeout` passed."""
    end = time.time() + timeout * SCALE
    last, since = 0, None
    while time.time() < end:
        if p.poll() is not None:
            return False
        if re.search(r"recording", ctx.bin_stderr(p).decode("utf-8", "replace")):
            return True
        n = bpf_attachments(p.pid)
        now = time.time()
        if n != last:
            last, since = n, now
        elif n and now - since >= 0.15:
            return True
        ctx.check_time("waiting for pymemspy to attach")
        time.sleep(0.02)
    return False


def target_state_problems(pid, what):
    bad = []
    for tid in sorted(tasks_of(pid)):
        st = proc_status(pid, tid)
        state = st.get("State", "?")
        if state[:1] in ("T", "t") or st.get("TracerPid", "0") != "0":
            bad.append("tid %d State=%s TracerPid=%s" % (tid, state, st.get("TracerPid")))
    if bad:
        return ["after %s the target is stopped or traced: %s" % (what, "; ".join(bad))]
    return []


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def frame_problems(f, where, special=False):
    if not isinstance(f, dict) or not isinstance(f.get("function"), str):
        return ["%s is %r" % (where, f)]
    if special:  # "<no python thread>": no file or line to give
        return []
    if not isinstance(f.get("file"), str) or not is_int(f.get("line")):
        return ["%s is %s: file must be a string and line an integer" % (where, json.dumps(f))]
    return []


def check_report_shape(doc, pid, events="growth"):
    """Schema-level problems of a record --json document (pymemspy.report/1)."""
    p = []
    if doc.get("schema") != "pymemspy.report/1":
        p.append("schema is %r, want 'pymemspy.report/1'" % doc.get("schema"))
    if doc.get("pid") != pid:
        p.append("pid is %r, want %d" % (doc.get("pid"), pid))
    py = doc.get("python")
    if not isinstance(py, dict) or not isinstance(py.get("version"), str) or \
            py.get("build") not in ("release", "debug", "free-threaded"):
        p.append("python is %r" % (py,))
    if doc.get("events") != events:
        p.append("events is %r, want %r" % (doc.get("events"), events))
    if not is_num(doc.get("duration")) or doc["duration"] < 0:
        p.append("duration is %r" % (doc.get("duration"),))
    for k in ("leak_candidates", "sites", "threads"):
        if not isinstance(doc.get(k), list):
            p.append("%s is %r, not a list" % (k, type(doc.get(k)).__name__))
    if not isinstance(doc.get("counters"), dict):
        p.append("counters is not an object")
    if p:
        return p
    for i, c in enumerate(doc["leak_candidates"]):
        where = "leak_candidates[%d]" % i
        if not isinstance(c, dict):
            p.append("%s is not an object" % where)
            continue
        special = is_special(c.get("function"))
        p += frame_problems(c, where, special)
        for k in ("rate", "rate_low", "rate_high", "confidence", "first_seen", "bytes"):
            if not is_num(c.get(k)):
                p.append("%s.%s is %r, want a number" % (where, k, c.get(k)))
        if is_num(c.get("confidence")) and not 0 <= c["confidence"] <= 1:
            p.append("%s.confidence is %r, want 0..1" % (where, c["confidence"]))
        if all(is_num(c.get(k)) for k in ("rate", "rate_low", "rate_high")) and \
                not c["rate_low"] <= c["rate"] <= c["rate_high"]:
            p.append("%s: rate %r not within [rate_low %r, rate_high %r]"
                     % (where, c["rate"], c["rate_low"], c["rate_high"]))
        if not isinstance(c.get("stack"), list):
            p.append("%s.stack is not a list" % where)
    prev = None
    for i, s in enumerate(doc["sites"]):
        where = "sites[%d]" % i
        if not isinstance(s, dict):
            p.append("%s is not an object" % where)
            continue
        special = is_special(s.get("function"))
        p += frame_problems(s, where, special)
        if not is_int(s.get("bytes")):
            p.append("%s.bytes is %r, want an integer" % (where, s.get("bytes")))
        elif prev is not None and s["bytes"] > prev:
            p.append("sites are not sorted by bytes: %s has %d after %d" % (where, s["bytes"], prev))
        else:
            prev = s["bytes"]
        if not is_num(s.get("rate")):
            p.append("%s.rate is %r, want a number" % (where, s.get("rate")))
        if not is_int(s.get("samples")):
            p.append("%s.samples is %r, want an integer" % (where, s.get("samples")))
        st = s.get("stack")
        if not isinstance(st, list):
            p.append("%s.stack is not a list" % where)
        elif not special:
            if not st:
                p.append("%s.stack is empty" % where)
            else:
                for j, f in enumerate(st):
                    fp = frame_problems(f, "%s.stack[%d]" % (where, j))
                    if fp:
                        p += fp
                        break
                if key(st[0]) != key(s):
                    p.append("%s: stack[0] is %s, not the site %s" % (where, fmt(st[0]), fmt(s)))
    for i, t in enumerate(doc["threads"]):
        if not isinstance(t, dict) or not is_int(t.get("tid")) or not is_int(t.get("bytes")):
            p.append("threads[%d] is %r" % (i, t))
            break
    return p[:30]


def parse_report(r, pid, truth=None, events="growth"):
    if r.rc != 0:
        raise Fail("record failed: %s" % r.describe(True))
    doc = parse_json(r)
    if not isinstance(doc, dict):
        raise Fail("the JSON document is not an object: %s" % r.describe(True))
    problems = check_report_shape(doc, pid, events)
    if truth is not None and isinstance(doc.get("python"), dict):
        py = doc["python"]
        if py.get("version") != truth["python"]["version"] or py.get("build") != truth["python"]["build"]:
            problems.append("python is %s, the interpreter says %s %s" % (
                json.dumps(py), truth["python"]["version"], truth["python"]["build"]))
    if problems:
        fail_with(problems, r)
    return doc


def site_label(s):
    if is_special(s.get("function")):
        return s["function"]
    return "%s (%s:%s)" % (s.get("function"), os.path.basename(str(s.get("file"))), s.get("line"))


def sites_summary(doc, n=4):
    return "; ".join("%s %s" % (site_label(s), mb(s.get("bytes"))) for s in doc.get("sites", [])[:n]) or \
        "(no sites)"


def is_leak_site(s, leak):
    if s.get("function") != leak["function"]:
        return False
    return leak.get("file") is None or s.get("file") == leak["file"]


def check_growth(ctx, r, doc, truth, t_exit=None, tolerance=RECORD_TOLERANCE, max_depth=None):
    """The top site is the leaking function (same file and line, same stack) and its bytes are within
    `tolerance` of the RSS the target gained over the recording. Returns a summary.

    The window is [end - duration, end], end = when pymemspy exited (a steady leak makes the few
    tenths of a second it takes to detach and report irrelevant); when the target was killed at
    `t_exit`, the recording ended when pymemspy noticed (it polls every 100 ms): [t_exit + 0.05 -
    duration, t_exit]."""
    leak = truth["leak"]
    problems = []
    notes = []
    sites = doc["sites"]
    dur = doc["duration"]
    if t_exit is None:
        t0, t1 = r.t_end - dur, r.t_end
    else:
        t0, t1 = t_exit + 0.05 - dur, t_exit
    time.sleep(0.15)  # the target's next timeline sample, past the end of the window
    tl = Timeline(truth["timeline"])
    if not tl.covers(t0, t1):
        raise Fail("the target's timeline (%s) does not cover the recording [%.2f, %.2f]: %s .. %s"
                   % (truth["timeline"], t0, t1, tl.rows[:1], tl.rows[-1:]))
    measured = tl.rss(t1) - tl.rss(t0)
    kept = (tl.progress(t1) - tl.progress(t0)) * truth.get("chunk", 0)
    context = "target: RSS +%s in the %.2fs window (it kept about %s); report: %s; target.rss_growth %s" % (
        mb(measured), t1 - t0, mb(kept), sites_summary(doc),
        mb((doc.get("target") or {}).get("rss_growth")) if isinstance(doc.get("target"), dict) else "absent")
    if measured < 1e6:
        raise Fail("harness: the target grew only %s during the recording (timeline %s)"
                   % (mb(measured), truth["timeline"]))
    if not sites:
        raise Fail("no sites at all; want %s on top\n    %s\n    %s"
                   % (leak["function"], context, r.describe()))
    top = sites[0]
    if not is_leak_site(top, leak):
        where = [i for i, s in enumerate(sites) if is_leak_site(s, leak)]
        problems.append("top site is %s, want %s (%s)" % (
            site_label(top), leak["function"],
            "it is sites[%d] with %s" % (where[0], mb(sites[where[0]]["bytes"])) if where else "absent"))
    else:
        if leak.get("line") is not None and top.get("line") != leak["line"]:
            problems.append("top site's line is %s, the allocating line is %s" % (top.get("line"), leak["line"]))
        ratio = top["bytes"] / float(measured)
        if abs(ratio - 1) > tolerance:
            problems.append("top site %s has %s = %.2f x the target's own RSS growth %s (want within %d%%)"
                            % (site_label(top), mb(top["bytes"]), ratio, mb(measured), tolerance * 100))
        else:
            notes.append("%s %s = %.2fx RSS growth %s" % (site_label(top), mb(top["bytes"]), ratio, mb(measured)))
        want_stack = (leak.get("stack") or [])[:max_depth]
        if want_stack:
            sp = compare_frames(top.get("stack") or [], want_stack)
            if sp:
                problems.append("top site's stack%s: %s" % (
                    " (--max-depth %d)" % max_depth if max_depth else "", "; ".join(sp)))
    # The thread that leaks carries the growth (threads: [{tid, bytes}]).
    if not is_special(leak["function"]) and is_leak_site(top, leak):
        threads = dict((t["tid"], t["bytes"]) for t in doc["threads"])
        mine = threads.get(truth["tid"])
        if mine is None:
            problems.append("threads has no entry for the leaking thread %d: %s"
                            % (truth["tid"], doc["threads"][:8]))
        elif mine < (1 - tolerance) * top["bytes"]:
            problems.append("the leaking thread %d has %s, its top site %s"
                            % (truth["tid"], mb(mine), mb(top["bytes"])))
    # The churning function nets (nearly) nothing.
    churn = truth.get("churn") or {}
    for s in sites:
        if s.get("function") == churn.get("function") and s.get("file") == churn.get("file"):
            notes.append("churn %s" % mb(s["bytes"]))
    cands = doc["leak_candidates"]
    if cands:
        if not is_leak_site(cands[0], leak):
            problems.append("top leak candidate is %s, want %s" % (site_label(cands[0]), leak["function"]))
        else:
            c = cands[0]
            notes.append("candidate rate %s/s [%s, %s] conf %.2f"
                         % (mb(c["rate"]), mb(c["rate_low"]), mb(c["rate_high"]), c["confidence"]))
    else:
        notes.append("no leak candidate")
    tgt = doc.get("target")
    if t_exit is None and isinstance(tgt, dict) and is_num(tgt.get("rss_growth")):
        rg = tgt["rss_growth"]
        if abs(rg / float(measured) - 1) > tolerance:
            problems.append("target.rss_growth is %s = %.2f x what the target measured (%s)"
                            % (mb(rg), rg / float(measured), mb(measured)))
    cnt = doc.get("counters") or {}
    for k in ("dropped", "read_errors", "stacks_lost"):
        if cnt.get(k):
            notes.append("%s=%s" % (k, cnt[k]))
    if problems:
        raise Fail("`%s`:\n    %s\n    %s\n    stderr: %s"
                   % (r.cmd(), "\n    ".join(problems), context, short(r.err, 600) or "(empty)"))
    return ", ".join(notes)


def record_args(pid, duration=RECORD_DURATION, json_out=True, extra=()):
    args = ["record", "--pid", str(pid), "--duration", "%g" % duration, "--events", "growth"]
    if json_out:
        args.append("--json")
    return args + list(extra)


def case_record_leak(ctx, python, script, mode=None, duration=RECORD_DURATION, extra=(), max_depth=None):
    args = ["90"] + ([mode] if mode else [])
    p, truth = start_growth_target(ctx, python, script, *args)
    r = ctx.run_bin(record_args(truth["pid"], duration, extra=extra), timeout=duration + 30)
    doc = parse_report(r, truth["pid"], truth)
    notes = check_growth(ctx, r, doc, truth, max_depth=max_depth)
    if extra:
        notes = "%s: %s" % (" ".join(extra), notes)
    if p.poll() is not None:
        raise Fail("the target died during the recording (rc %s)\n    %s" % (p.returncode, ctx.proc_output(p)))
    problems = target_state_problems(p.pid, "the recording")
    if problems:
        raise Fail("; ".join(problems))
    return notes


SURVIVORS_SHARE = 0.90  # the attribution issue's goal: growth charged to the leaking function


def case_record_survivors(ctx, python, mode=None, duration=6.0):
    """--events survivors on leak_small.py: a small-object leak sharing pymalloc's pools with small-object
    churn (first touch blames the churn there). The leaking function must be the top site (line and
    stack), within 25% of the target's RSS growth, with at least 90% of all the bytes charged, from
    sampled objects that survived (counters.survivors > 0); the target is left untraced."""
    args = ["90"] + ([mode] if mode else [])
    p, truth = start_growth_target(ctx, python, "leak_small.py", *args)
    path = os.path.join(ctx.dir, "survivors.rec")
    r = ctx.run_bin(record_args(truth["pid"], duration, extra=["--events", "survivors", "-o", path]),
                    timeout=duration + 30)
    doc = parse_report(r, truth["pid"], truth, events="survivors")
    notes = check_growth(ctx, r, doc, truth)
    # the record file holds the same sites (charges come late here: held until a survivor exists)
    rf = ctx.run_bin(["report", path, "--json"], timeout=30)
    if rf.rc != 0:
        raise Fail("report of the record file failed: %s" % rf.describe(True))
    fdoc = parse_json(rf)
    live = [(x["function"], x["line"], x["bytes"]) for x in doc["sites"]]
    kept = [(x["function"], x["line"], x["bytes"]) for x in fdoc["sites"]]
    if live != kept:
        raise Fail("report of the record file disagrees with record's own report:\n    record: %s\n    file:   %s"
                   % (live[:5], kept[:5]))
    c = doc.get("counters") or {}
    if not c.get("survivors"):
        raise Fail("no survivor in %.0fs (counters %s)\n    %s" % (duration, c, r.describe()))
    total = sum(max(0, x["bytes"]) for x in doc["sites"])
    mine = sum(x["bytes"] for x in doc["sites"] if is_leak_site(x, truth["leak"]) and x["bytes"] > 0)
    share = mine / float(total) if total else 0.0
    if share < SURVIVORS_SHARE:
        raise Fail("%s got %.1f%% of the %s charged, want >= %d%%: %s\n    counters %s"
                   % (truth["leak"]["function"], 100 * share, mb(total), 100 * SURVIVORS_SHARE,
                      sites_summary(doc), c))
    if p.poll() is not None:
        raise Fail("the target died during the recording (rc %s)\n    %s" % (p.returncode, ctx.proc_output(p)))
    problems = target_state_problems(p.pid, "the recording")
    if problems:
        raise Fail("; ".join(problems))
    return "%.1f%% to %s from %d survivors of %d samples; %s" % (
        100 * share, truth["leak"]["function"], c["survivors"], c.get("survivor_followed", 0), notes)


def case_record_survivors_no_pymalloc(ctx, python):
    """A target running with PYTHONMALLOC=malloc has no pools: exit 5, naming pymalloc."""
    truth_path = os.path.join(ctx.dir, "truth.json")
    timeline = os.path.join(ctx.dir, "timeline")
    p = ctx.spawn([python, "-B", os.path.join(TARGETS, "leak_small.py"), truth_path, timeline, "60"],
                  env_extra={"PYTHONMALLOC": "malloc"})
    wait_file(ctx, truth_path, p, "truth file")
    r = ctx.run_bin(["record", "--pid", str(p.pid), "--duration", "2", "--events", "survivors"], timeout=30)
    err = r.err.decode("utf-8", "replace")
    if r.rc != EXIT_UNSUPPORTED or "pymalloc" not in err:
        raise Fail("want exit %d naming pymalloc: %s" % (EXIT_UNSUPPORTED, r.describe(True)))
    problems = target_state_problems(p.pid, "the refusal")
    if problems:
        raise Fail("; ".join(problems))
    return "exit 5: %s" % short(r.err)


def case_record_survivors_refused(ctx, python):
    """Where hardware watchpoints open but do not trap (doctor's selftest:watchpoint fails): record
    --events survivors on a real target is refused at once, exit 8 naming watchpoints, and the target
    is left running, untraced. SKIP where they trap (record/survivors/* run there)."""
    ok, evidence = host_feature("watchpoints")
    if ok is True:
        raise Skip("watchpoints trap on this host (%s)" % evidence)
    if ok is None:
        raise Skip("unknown whether watchpoints trap on this host (%s)" % evidence)
    p, truth = start_growth_target(ctx, python, "leak_small.py", "60")
    r = ctx.run_bin(["record", "--pid", str(truth["pid"]), "--duration", "10", "--events", "survivors", "--json"],
                    timeout=15)
    err = r.err.decode("utf-8", "replace")
    problems = []
    if r.rc != EXIT_HOST:
        problems.append("exit %s, want %d" % (r.rc, EXIT_HOST))
    if "watchpoint" not in err.lower():
        problems.append("stderr does not name watchpoints")
    if r.elapsed > 15 * SCALE:
        problems.append("refused only after %.1fs" % r.elapsed)
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    problems += target_state_problems(p.pid, "the refusal")
    if problems:
        raise Fail("%s (host: %s): %s" % ("; ".join(problems), evidence, r.describe(True)))
    return "exit 8 in %.1fs (%s): %s" % (r.elapsed, evidence, short(r.err, 200))


def text_top_row(text, leak_function):
    """Problems of a plain-text report: its sections, in order, and the first row of the sites table."""
    lines = text.splitlines()
    idx_c = [i for i, l in enumerate(lines) if "Leak candidates" in l]
    idx_s = [i for i, l in enumerate(lines) if "Top sites by resident growth" in l]
    if not idx_c:
        return ["no 'Leak candidates' section"]
    if not idx_s:
        return ["no 'Top sites by resident growth' section"]
    if idx_c[0] > idx_s[0]:
        return ["'Leak candidates' comes after 'Top sites by resident growth'"]
    for l in lines[idx_s[0] + 1:]:
        if re.search(r"\d", l) and re.search(r"[A-Za-z<]", l) and not re.match(r"^\s*[-=]+\s*$", l):
            if leak_function not in l:
                return ["the first row of the sites table does not name %s: %r" % (leak_function, l)]
            return []
    return ["the sites table has no rows"]


def case_record_text(ctx, python):
    p, truth = start_growth_target(ctx, python, "leak_large.py", "60")
    r = ctx.run_bin(record_args(truth["pid"], 3.0, json_out=False), timeout=35)
    if r.rc != 0:
        raise Fail("record failed: %s" % r.describe(True))
    try:
        text = r.out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fail("stdout is not UTF-8 (%s): %s" % (e, r.describe()))
    problems = text_top_row(text, truth["leak"]["function"])
    if str(truth["pid"]) not in text:
        problems.append("the header does not name pid %d" % truth["pid"])
    if problems:
        raise Fail("; ".join(problems) + "\n    " + r.describe(True).replace("stdout: ", "stdout:\n            ", 1))
    return "header, 'Leak candidates', then 'Top sites by resident growth' led by %s" % truth["leak"]["function"]


def case_record_signals(ctx, python):
    """SIGINT (like Ctrl-C) and SIGTERM stop a recording that has no --duration: exit 0 with the
    report of what was recorded so far; a SIGINT while still attaching stops cleanly too."""
    p, truth = start_growth_target(ctx, python, "leak_large.py", "90")
    pid = truth["pid"]
    notes = []
    # 1. SIGINT to pymemspy's process group (what a terminal's Ctrl-C does) after ~3 s of recording.
    b = ctx.start_bin(["record", "--pid", str(pid), "--json"])
    wait_attached(ctx, b)
    time.sleep(3.0)
    t_sig = time.time()
    try:
        os.killpg(b.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    r = ctx.finish_bin(b, timeout=15)
    stop_delay = time.time() - t_sig
    doc = parse_report(r, pid, truth)
    if stop_delay > 3.0 * SCALE:
        raise Fail("pymemspy took %.1fs to stop after SIGINT: %s" % (stop_delay, r.describe()))
    if not 2.0 <= doc["duration"] <= 3.0 + stop_delay + 8.0:
        raise Fail("after about 3s of recording and SIGINT, duration is %r: %s" % (doc["duration"], r.describe()))
    notes.append("SIGINT: stopped in %.2fs, %s" % (stop_delay, check_growth(ctx, r, doc, truth)))
    problems = target_state_problems(pid, "SIGINT")
    # 2. SIGTERM, plain text report.
    b = ctx.start_bin(["record", "--pid", str(pid)])
    wait_attached(ctx, b)
    time.sleep(1.5)
    try:
        os.kill(b.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    r = ctx.finish_bin(b, timeout=15)
    if r.rc != 0:
        raise Fail("after SIGTERM: %s" % r.describe(True))
    tp = text_top_row(r.out.decode("utf-8", "replace"), truth["leak"]["function"])
    if tp:
        raise Fail("after SIGTERM: %s\n    %s" % ("; ".join(tp), r.describe(True)))
    notes.append("SIGTERM: text report led by %s" % truth["leak"]["function"])
    problems += target_state_problems(pid, "SIGTERM")
    # 3. SIGINT while still attaching (0.1 s after start): no crash, no hang, target untouched.
    b = ctx.start_bin(["record", "--pid", str(pid), "--json"])
    time.sleep(0.1)
    try:
        os.killpg(b.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    r = ctx.finish_bin(b, timeout=15)
    if r.rc == 0:
        parse_report(r, pid, truth)
        notes.append("early SIGINT: exit 0 with a report of %.2fs" % parse_json(r)["duration"])
    elif r.rc >= 64 or not r.err.strip() or r.out.strip():
        raise Fail("SIGINT while attaching: want exit 0 with a report, or a small exit code with a message "
                   "and nothing on stdout: %s" % r.describe(True))
    else:
        notes.append("early SIGINT: exit %d (%s)" % (r.rc, short(r.err, 120)))
    problems += target_state_problems(pid, "SIGINT while attaching")
    # The target still runs normally: it keeps leaking at its pace.
    time.sleep(0.5)
    tl0 = Timeline(truth["timeline"])
    time.sleep(1.0)
    tl1 = Timeline(truth["timeline"])
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    elif not tl0.rows or not tl1.rows or tl1.rows[-1][2] - tl0.rows[-1][2] < 0.5 / truth["period"]:
        problems.append("the target stopped making progress after the recordings (%s -> %s)"
                        % (tl0.rows[-1:], tl1.rows[-1:]))
    if problems:
        raise Fail("; ".join(problems))
    return "; ".join(notes)


def case_record_target_exits(ctx, python):
    """The target exits (by itself, then killed) during a recording: exit 0, the report, a message."""
    notes = []
    # 1. churn.py finishes its rounds and exits normally about 1.5 s into a 60 s recording.
    p, timeline = start_churn_target(ctx, python, rounds=50, pace_ms=15)
    b = ctx.start_bin(record_args(p.pid, 60))
    wait_attached(ctx, b)
    send_line(p)
    rc, out, err = wait_target_exit(ctx, p, 30)
    t_exit = time.time()
    r = ctx.finish_bin(b, timeout=15)
    lag = time.time() - t_exit
    if rc != 0 or b"mismatches 0" not in out:
        raise Fail("churn target failed under the recording (rc %s): %s %s" % (rc, short(out), short(err)))
    doc = parse_report(r, p.pid)
    problems = []
    if lag > 3 * SCALE:
        problems.append("pymemspy took %.1fs to notice that the target exited" % lag)
    if not STOP_MESSAGE.search(r.err.decode("utf-8", "replace")):
        problems.append("no message on stderr saying that the target exited")
    if doc["duration"] > r.elapsed + 0.5:
        problems.append("duration %.2f is longer than the run (%.2fs)" % (doc["duration"], r.elapsed))
    if problems:
        raise Fail("target exiting by itself: %s\n    %s" % ("; ".join(problems), r.describe(True)))
    notes.append("exit: report after %.2fs, %d sites" % (lag, len(doc["sites"])))
    # 2. A leaking target killed (SIGKILL) about 2 s into a 60 s recording: its leak is still reported.
    q, truth = start_growth_target(ctx, python, "leak_large.py", "60")
    b = ctx.start_bin(record_args(truth["pid"], 60))
    wait_attached(ctx, b)
    time.sleep(2.0)
    t_kill = time.monotonic()
    killpg(q)
    q.wait()
    r = ctx.finish_bin(b, timeout=15)
    lag = time.monotonic() - t_kill
    doc = parse_report(r, truth["pid"], truth)
    problems = []
    if lag > 3 * SCALE:
        problems.append("pymemspy took %.1fs to notice that the target was killed" % lag)
    if not STOP_MESSAGE.search(r.err.decode("utf-8", "replace")):
        problems.append("no message on stderr saying that the target exited")
    if problems:
        raise Fail("target killed: %s\n    %s" % ("; ".join(problems), r.describe(True)))
    # The recording ended when the target died, not when pymemspy noticed.
    notes.append("killed: report after %.2fs, %s" % (lag, check_growth(ctx, r, doc, truth, t_exit=t_kill)))
    return "; ".join(notes)


def case_record_unchanged_output(ctx, python):
    """churn.py prints the same thing (and exits 0) with and without a recording during its work."""
    rounds = 100
    p, _ = start_churn_target(ctx, python, rounds, name="alone")
    send_line(p)
    rc_a, out_a, err_a = wait_target_exit(ctx, p, 40)
    p, timeline = start_churn_target(ctx, python, rounds, name="recorded")
    b = ctx.start_bin(record_args(p.pid, 2.0))
    wait_attached(ctx, b)
    t_go = time.monotonic()
    send_line(p)
    r = ctx.finish_bin(b, timeout=35)
    rc_b, out_b, err_b = wait_target_exit(ctx, p, 40)
    doc = parse_report(r, p.pid)
    tl = Timeline(timeline)
    work_end = tl.rows[-1][0] if tl.rows else 0
    problems = []
    if rc_a != 0 or err_a.strip() or b"mismatches 0" not in out_a:
        problems.append("alone: rc %s, stdout %r, stderr %r" % (rc_a, short(out_a), short(err_a)))
    if (rc_b, out_b, err_b) != (rc_a, out_a, err_a):
        problems.append("recorded: rc %s, stdout %r, stderr %r\n    alone:    rc %s, stdout %r, stderr %r"
                        % (rc_b, short(out_b), short(err_b), rc_a, short(out_a), short(err_a)))
    if problems:
        raise Fail("the target's output changed under the profiler: " + "\n    ".join(problems))
    overlap = min(r.t_end, work_end) - max(t_go, r.t_end - doc["duration"])
    if overlap < 0.5:
        raise Fail("harness: the recording (%.2fs, ended %.2fs after 'go') overlapped only %.2fs of the work "
                   "(which ended %.2fs after 'go')" % (doc["duration"], r.t_end - t_go, overlap, work_end - t_go))
    return "same output and exit status (%d bytes); the recording overlapped %.1fs of the work" % (
        len(out_a), overlap)


def case_record_attach_detach(ctx, python, cycles=20):
    """Attach and detach `cycles` times in a row: each recording exits 0 with a report, the target
    keeps making progress at about its own pace, answers, and finishes normally."""
    p, timeline = start_churn_target(ctx, python, rounds=0, pace_ms=2)
    send_line(p)

    def rate(seconds=1.0):
        a = Timeline(timeline).rows
        time.sleep(seconds)
        b = Timeline(timeline).rows
        if not a or not b or b[-1][0] <= a[-1][0]:
            return 0.0
        return (b[-1][2] - a[-1][2]) / (b[-1][0] - a[-1][0])

    time.sleep(0.3)
    before = rate()
    problems = []
    last = Timeline(timeline).rows[-1][2]
    durations = []
    for i in range(cycles):
        r = ctx.run_bin(record_args(p.pid, 0.3), timeout=20)
        if r.rc != 0:
            raise Fail("cycle %d: %s" % (i + 1, r.describe(True)))
        doc = parse_report(r, p.pid)
        durations.append(r.elapsed)
        if p.poll() is not None:
            raise Fail("the target died during cycle %d (rc %s): %s" % (i + 1, p.returncode, ctx.proc_output(p)))
        problems += target_state_problems(p.pid, "cycle %d" % (i + 1))
        time.sleep(0.06)
        now = Timeline(timeline).rows[-1][2]
        if now <= last:
            problems.append("no progress during cycle %d (rounds %d -> %d)" % (i + 1, last, now))
        last = now
        if problems:
            raise Fail("; ".join(problems))
    after = rate()
    send_line(p, b"stop\n")
    rc, out, err = wait_target_exit(ctx, p, 20)
    if rc != 0 or err.strip() or b"mismatches 0" not in out:
        problems.append("the target did not finish normally: rc %s, stdout %r, stderr %r"
                        % (rc, short(out), short(err)))
    if before <= 0 or after < 0.5 * before:
        problems.append("the target ran at %.0f rounds/s before the cycles and %.0f after" % (before, after))
    if problems:
        raise Fail("; ".join(problems))
    return "%d cycles (%.2f-%.2fs each); target %.0f rounds/s before, %.0f after; finished normally" % (
        cycles, min(durations), max(durations), before, after)


def case_record_errors(ctx, kind, arg=None):
    """record's refusals: exit 3 (no such pid), 4 (not Python), 5 (unsupported), 6 (no privilege)."""
    problems = []
    if kind == "no-such-pid":
        for pid in (free_pid(), 99999999):
            if os.path.exists("/proc/%d" % pid):
                continue
            for extra in ([], ["--json"]):
                problems += expect_error(ctx, record_args(pid, 1, False, extra), EXIT_NOPROC,
                                         "record, pid %d (no such process)" % pid)
        result = "exit 3 with a message"
    elif kind == "not-python":
        p = ctx.spawn(["sleep", "100"], name="sleep")
        end = time.time() + 5
        while not os.path.exists("/proc/%d/exe" % p.pid) or \
                os.path.basename(os.readlink("/proc/%d/exe" % p.pid)) != "sleep":
            if time.time() > end:
                raise Fail("sleep did not start")
            time.sleep(0.01)
        time.sleep(0.05)
        for extra in ([], ["--json"]):
            problems += expect_error(ctx, record_args(p.pid, 1, False, extra), EXIT_NOTPY, "record, sleep (not Python)")
        result = "exit 4 with a message"
    elif kind == "unsupported":
        python, sv = arg
        ready = os.path.join(ctx.dir, "ready")
        p = python_target(ctx, python, "sleeper.py", ready)
        wait_file(ctx, ready, p, "ready file")
        mention = (r"(?<![\d.])" + re.escape(sv) + r"(?![\d])", "the version " + sv)
        for extra in ([], ["--json"]):
            problems += expect_error(ctx, record_args(p.pid, 1, False, extra), EXIT_UNSUPPORTED,
                                     "record, Python %s" % sv, must_mention=mention)
        result = "exit 5 naming %s" % sv
    elif kind == "no-privilege":
        if not shutil.which("setpriv"):
            raise Skip("setpriv not installed")
        nobody_can_run(ctx)
        ver, python = first_interpreter()
        ready = os.path.join(ctx.dir, "ready")
        p = python_target(ctx, python, "sleeper.py", ready)
        wait_file(ctx, ready, p, "ready file")
        for extra in ([], ["--json"]):
            problems += expect_error(ctx, record_args(p.pid, 1, False, extra), EXIT_PRIV,
                                     "record as user nobody vs root's Python %s" % ver,
                                     must_mention=(r"CAP_[A-Z_]+", "a capability (CAP_...)"), user=NOBODY)
        result = "exit 6 naming a capability"
        # Not root, but its own process: ptrace rights, no CAP_BPF/CAP_PERFMON.
        try:
            ver2, py2 = first_interpreter(("deb-3.11", "deb-3.11d"), only=True)
        except Skip:
            py2 = None
        if py2:
            os.chmod(ctx.dir, 0o777)
            ready2 = os.path.join(ctx.dir, "ready2")
            q = ctx.spawn(NOBODY + [py2, "-B", os.path.join(TARGETS, "sleeper.py"), ready2])
            wait_file(ctx, ready2, q, "ready file")
            with open(ready2) as f:
                qpid = int(f.read().split()[0])
            r = ctx.run_bin(record_args(qpid, 1), user=NOBODY)
            if r.rc == 0:
                parse_report(r, qpid)
                result += "; nobody recording its own Python %s: exit 0 (fallback mode)" % ver2
            else:
                problems += expect_error(ctx, record_args(qpid, 1), EXIT_PRIV,
                                         "record as user nobody vs its own Python %s" % ver2,
                                         must_mention=(r"CAP_(BPF|PERFMON|SYS_ADMIN)", "CAP_BPF or CAP_PERFMON"),
                                         user=NOBODY)
                result += "; exit 6 naming CAP_BPF/CAP_PERFMON for its own process"
    else:
        raise Fail("harness: unknown kind %r" % kind)
    if problems:
        raise Fail("\n    ".join(problems))
    return result


RECORD_USAGE_ERRORS = [
    ["record"],
    ["record", "--pid"],
    ["record", "--pid", ""],
    ["record", "--pid", "abc"],
    ["record", "--pid", "0"],
    ["record", "--pid", "-3"],
    ["record", "--json"],
    ["record", "--pid", "1", "stray"],
    ["record", "--pid", "1", "--bogus"],
    ["record", "--pid", "1", "--duration"],
    ["record", "--pid", "1", "--duration", "abc"],
    ["record", "--pid", "1", "--duration", "-1"],
    ["record", "--pid", "1", "--duration", "5x"],
    ["record", "--pid", "1", "--events", "nosuchsource"],
    ["record", "--pid", "1", "--events", ""],
    ["record", "--pid", "1", "--max-depth", "0"],
    ["record", "--pid", "1", "--max-depth", "x"],
    ["record", "--pid", "1", "--budget", "x"],
    ["record", "--pid", "1", "--budget", "-5"],
    ["record", "--pid", "1", "--events", "nope"],
    ["record", "--pid", "1", "--events", "malloc,pymalloc"],
    ["record", "--pid", "1", "--events", "malloc", "--rate", "10"],
    ["record", "--pid", "1", "--events", "malloc", "--rate", "63"],
    ["record", "--pid", "1", "--events", "pymalloc", "--rate", "0"],
    ["record", "--pid", "1", "--events", "malloc", "--attach", "uprobe"],
    ["record", "--pid", "1", "--events", "malloc", "--rate", "-4096"],
    ["record", "--pid", "1", "--events", "malloc", "--rate", "abc"],
    ["record", "--pid", "1", "--events", "malloc", "--rate", "65M"],
    ["record", "--pid", "1", "--events", "malloc", "--rate"],
]


def case_record_usage(ctx):
    problems = []
    for args in RECORD_USAGE_ERRORS:
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
    r = ctx.run_bin(["record", "--help"])
    if r.rc != 0 or b"--duration" not in r.out:
        problems.append("want exit 0 and help naming --duration on stdout: %s" % r.describe(True))
    r = ctx.run_bin(["--help"])
    if r.rc != 0 or b"record" not in r.out:
        problems.append("want `pymemspy --help` to list record: %s" % r.describe(True))
    if problems:
        raise Fail("\n    ".join(problems))
    return "%d bad command lines exit 2; record --help exits 0" % len(RECORD_USAGE_ERRORS)


def case_growth_target_only(ctx, python, script, mode=None):
    """--targets-only: a growth target grows at its rate (the churn one does not) and knows its truth."""
    if script == "churn.py":
        p, timeline = start_churn_target(ctx, python, rounds=0, pace_ms=5)
        send_line(p)
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(2.0)
        tl = Timeline(timeline)
        growth = tl.rss(t0 + 2.0) - tl.rss(t0)
        rounds = tl.progress(t0 + 2.0) - tl.progress(t0)
        send_line(p, b"stop\n")
        rc, out, err = wait_target_exit(ctx, p, 20)
        if rc != 0 or b"mismatches 0" not in out or err.strip():
            raise Fail("rc %s, stdout %r, stderr %r" % (rc, short(out), short(err)))
        if abs(growth) > 1e6 or rounds < 10:
            raise Fail("over 2s: RSS %+d bytes, %d rounds (want flat RSS, progress)" % (growth, rounds))
        return "flat RSS (%+d bytes over 2s), %d rounds" % (growth, rounds)
    args = ["30"] + ([mode] if mode else [])
    p, truth = start_growth_target(ctx, python, script, *args)
    t0 = time.monotonic()
    time.sleep(2.0)
    tl = Timeline(truth["timeline"])
    growth = tl.rss(t0 + 2.0) - tl.rss(t0)
    kept = (tl.progress(t0 + 2.0) - tl.progress(t0)) * truth["chunk"]
    leak = truth["leak"]
    problems = []
    slack = max(0.1 * kept, 1.5 * truth["chunk"])  # the timeline samples whole chunks, or not
    if kept < 4e6 or abs(growth - kept) > slack:
        problems.append("over 2s: RSS %s, kept %s (want several MB, within %s)" % (mb(growth), mb(kept), mb(slack)))
    if leak.get("line"):
        with open(leak["file"], encoding="utf-8") as f:
            text = f.read().splitlines()[leak["line"] - 1]
        if "LEAK-LINE" not in text:
            problems.append("leak line %d is %r" % (leak["line"], text))
        if [f["function"] for f in leak["stack"][:1]] != [leak["function"]] or \
                leak["stack"][-1]["function"].rsplit(".", 1)[-1] not in ("<module>", "_bootstrap"):
            problems.append("stack %s" % [fmt(f) for f in leak["stack"]])
    if p.poll() is not None:
        problems.append("target exited (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    if problems:
        raise Fail("; ".join(problems))
    return "%s: RSS +%s over 2s (kept %s)" % (leak["function"], mb(growth), mb(kept))


# --- record files: record -o FILE, report FILE, report --diff ----------------------------------
# man/pymemspy-record.5: a 16-byte header ("PYMEMSPY", u32 version 1, u32 flags), then records:
# u32 type, u32 length (at most 16 MiB), the payload, u32 CRC-32 of the 8 + length bytes before
# it. RecFile reads that framing on its own (and decodes META and END), so that the cases can say
# where a file's whole records end, cut files at chosen places and check what pymemspy reports.
REC_META, REC_STRING, REC_SITE, REC_STACK, REC_TICK, REC_END = 1, 2, 3, 4, 5, 6
REC_HEADER = 16
REC_MAX_PAYLOAD = 16 << 20
FILE_BUDGET_PER_MINUTE = 1e6   # "The budget is 1 MB a minute at the default settings."
EXIT_CORRUPT = 7
REPORT_ONLY_KEYS = ("truncated", "recording", "profiler")  # what the two documents may differ in
TRUNCATED_TEXT = re.compile(r"truncated(?!\s*[:=]?\s*\d)", re.I)  # not the counter "truncated 0"
WRITE_FAILED = re.compile(r"writ\w*\b.*\bfail|fail\w*\b.*\bwrit|could not write|cannot write", re.I)


class RecFile:
    def __init__(self, data):
        self.data = data
        self.size = len(data)
        self.records = []   # (type, offset, end) of each whole record whose CRC matches, in order
        self.stop = None    # why the records end before the file does: "cut", "crc", "length"
        self.magic_ok = data[:8] == b"PYMEMSPY"
        self.version = struct.unpack_from("<I", data, 8)[0] if len(data) >= 12 else None
        self.flags = struct.unpack_from("<I", data, 12)[0] if len(data) >= 16 else None
        off = REC_HEADER
        while self.magic_ok and off < len(data):
            if off + 8 > len(data):
                self.stop = "cut"
                break
            typ, length = struct.unpack_from("<II", data, off)
            if length > REC_MAX_PAYLOAD:
                self.stop = "length"
                break
            end = off + 8 + length + 4
            if end > len(data):
                self.stop = "cut"
                break
            if zlib.crc32(data[off:end - 4]) & 0xFFFFFFFF != struct.unpack_from("<I", data, end - 4)[0]:
                self.stop = "crc"
                break
            self.records.append((typ, off, end))
            off = end
        self.whole_end = self.records[-1][2] if self.records else min(len(data), REC_HEADER)
        self.boundaries = [REC_HEADER] + [e for _, _, e in self.records]

    def last_boundary(self, offset):
        """Where a copy of the file cut at `offset` has its last whole record end."""
        return max([b for b in self.boundaries if b <= offset] or [0])

    def count(self, typ):
        return sum(1 for t, _, _ in self.records if t == typ)

    def _payload(self, typ):
        for t, off, end in self.records:
            if t == typ:
                return self.data[off + 8:end - 4]
        return None

    @staticmethod
    def _fields(payload, spec):
        """Decodes payload by spec: i32/u32/u64/f64/str."""
        out, off = [], 0
        for kind in spec:
            if kind == "str":
                (n,) = struct.unpack_from("<H", payload, off)
                out.append(payload[off + 2:off + 2 + n].decode("utf-8", "replace"))
                off += 2 + n
            else:
                fmt_ = {"i32": "<i", "u32": "<I", "u64": "<Q", "f64": "<d"}[kind]
                out.append(struct.unpack_from(fmt_, payload, off)[0])
                off += struct.calcsize(fmt_)
        return out

    def meta(self):
        p = self._payload(REC_META)
        if p is None:
            return None
        names = ("pid", "comm", "python_version", "python_build", "events", "host", "start_time",
                 "rss_start", "budget_per_sec", "max_depth")
        try:
            return dict(zip(names, self._fields(p, ("i32", "str", "str", "str", "str", "str", "f64",
                                                     "u64", "u32", "u32"))))
        except struct.error:
            return {"error": "META payload of %d bytes is too short" % len(p)}

    def end(self):
        p = self._payload(REC_END)
        if p is None:
            return None
        names = ("duration", "ended_by", "rss_end", "profiler_cpu", "profiler_max_rss", "bpf_map_bytes",
                 "profile_bytes")
        try:
            return dict(zip(names, self._fields(p, ("f64", "str", "u64", "f64", "u64", "u64", "u64"))))
        except struct.error:
            return {"error": "END payload of %d bytes is too short" % len(p)}

    def complete_problems(self):
        """A file the recorder finished: header, META first, END last, nothing cut or damaged."""
        p = []
        if not self.magic_ok:
            p.append("does not start with PYMEMSPY: %r" % self.data[:16])
            return p
        if self.version != 1 or self.flags != 0:
            p.append("header: version %s, flags %s (want 1, 0)" % (self.version, self.flags))
        if self.stop:
            p.append("its records stop at byte %d of %d (%s)" % (self.whole_end, self.size, self.stop))
        types = [t for t, _, _ in self.records]
        if not types or types[0] != REC_META:
            p.append("the first record is of type %s, not META (1)" % (types[:1] or None))
        if not types or types[-1] != REC_END:
            p.append("the last record is of type %s, not END (6)" % (types[-1:] or None))
        if types.count(REC_META) != 1 or types.count(REC_END) != 1:
            p.append("%d META and %d END records" % (types.count(REC_META), types.count(REC_END)))
        if not self.count(REC_TICK):
            p.append("no TICK records")
        return p

    def summary(self):
        return "%d bytes: %d records (%d strings, %d sites, %d stacks, %d ticks)%s" % (
            self.size, len(self.records), self.count(REC_STRING), self.count(REC_SITE),
            self.count(REC_STACK), self.count(REC_TICK),
            "" if not self.stop else ", then %s at byte %d" % (self.stop, self.whole_end))


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Fail("cannot read %s: %s" % (path, e))


def file_mode_problems(path, what):
    try:
        st = os.lstat(path)
    except OSError as e:
        return ["%s: %s" % (what, e)]
    p = []
    if not stat.S_ISREG(st.st_mode):
        p.append("%s is not a regular file (mode %o)" % (what, st.st_mode))
    if stat.S_IMODE(st.st_mode) != 0o600:
        p.append("%s has mode %04o, want 0600" % (what, stat.S_IMODE(st.st_mode)))
    return p


def start_paced_target(ctx, python, period=0.02, trigger=None, lifetime=60, tag=""):
    """Start leak_paced.py (64 KiB every `period` s; with `trigger`, 40 more sites with long names
    once that file exists); return (proc, truth) once it is warmed up."""
    truth_path = os.path.join(ctx.dir, "truth%s.json" % tag)
    timeline = os.path.join(ctx.dir, "timeline%s" % tag)
    args = [truth_path, timeline, "%g" % lifetime, "%g" % period] + ([trigger] if trigger else [])
    p = python_target(ctx, python, "leak_paced.py", *args, name="target" + tag)
    wait_file(ctx, truth_path, p, "truth file")
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    if not truth.get("leak", {}).get("stack"):
        raise Fail("target wrote no stack of its leaking call: %s" % truth)
    return p, truth


def site_key(s):
    return (s.get("function"), s.get("file"), s.get("line"))


def _num_equal(x, y, rel):
    if is_int(x) and is_int(y):
        return x == y
    return abs(x - y) <= rel * max(abs(x), abs(y)) + 1e-9


def deep_diff(x, y, path, rel=0.01, out=None):
    """Where two JSON values differ: integers exactly, numbers with a fraction within `rel`."""
    out = [] if out is None else out
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y), key=str):
            if k not in y:
                out.append("%s.%s only in record's document (%s)" % (path, k, json.dumps(x[k])[:80]))
            elif k not in x:
                out.append("%s.%s only in report's document (%s)" % (path, k, json.dumps(y[k])[:80]))
            else:
                deep_diff(x[k], y[k], "%s.%s" % (path, k), rel, out)
    elif isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            out.append("%s: %d items in record's document, %d in report's" % (path, len(x), len(y)))
        for i, (a, b) in enumerate(zip(x, y)):
            deep_diff(a, b, "%s[%d]" % (path, i), rel, out)
    elif is_num(x) and is_num(y):
        if not _num_equal(x, y, rel):
            out.append("%s: %r in record's document, %r in report's" % (path, x, y))
    elif x != y:
        out.append("%s: %s in record's document, %s in report's" % (path, json.dumps(x)[:100], json.dumps(y)[:100]))
    return out


def compare_keyed(xs, ys, path, keyf, label):
    """Lists of objects matched by keyf (the order is checked separately)."""
    out = []
    mx = dict((keyf(s), s) for s in xs)
    my = dict((keyf(s), s) for s in ys)
    if len(mx) != len(xs) or len(my) != len(ys):
        out.append("%s: duplicate entries (%d/%d distinct in record's, %d/%d in report's)"
                   % (path, len(mx), len(xs), len(my), len(ys)))
    only_x = [k for k in mx if k not in my]
    only_y = [k for k in my if k not in mx]
    for k in only_x[:5]:
        out.append("%s: %s only in record's document" % (path, label(mx[k])))
    for k in only_y[:5]:
        out.append("%s: %s only in report's document" % (path, label(my[k])))
    for k in mx:
        if k in my:
            deep_diff(mx[k], my[k], "%s[%s]" % (path, label(mx[k])[:60]), out=out)
    return out


def compare_reports(rec, rep):
    """What differs between `record --json` and `report FILE --json` (REPORT_ONLY_KEYS aside).
    Sites and candidates are matched by (function, file, line), threads by tid; integers must be
    equal, rates and other fractional numbers within 1%. Returns (problems, notes)."""
    problems, notes = [], []
    a = dict((k, v) for k, v in rec.items() if k not in REPORT_ONLY_KEYS)
    b = dict((k, v) for k, v in rep.items() if k not in REPORT_ONLY_KEYS)
    for k in sorted(set(a) - set(b)):
        problems.append("%s only in record's document" % k)
    for k in sorted(set(b) - set(a)):
        problems.append("%s only in report's document" % k)
    for k in sorted(set(a) & set(b)):
        if k in ("sites", "leak_candidates") and isinstance(a[k], list) and isinstance(b[k], list):
            problems += compare_keyed(a[k], b[k], k, site_key, site_label)
            order_a = [site_key(s) for s in a[k]]
            order_b = [site_key(s) for s in b[k]]
            if order_a != order_b and sorted(order_a, key=str) == sorted(order_b, key=str):
                # Equal sort keys (bytes, or confidence x rate) may come in either order.
                sort_by = (lambda s: s.get("bytes")) if k == "sites" else \
                    (lambda s: round((s.get("confidence") or 0) * (s.get("rate") or 0), 3))
                if [sort_by(s) for s in a[k]] == [sort_by(s) for s in b[k]]:
                    notes.append("%s: ties in another order" % k)
                else:
                    problems.append("%s in another order: record %s; report %s" % (
                        k, [site_label(s) for s in a[k][:5]], [site_label(s) for s in b[k][:5]]))
        elif k == "threads" and isinstance(a[k], list) and isinstance(b[k], list):
            problems += compare_keyed(a[k], b[k], k, lambda t: t.get("tid"), lambda t: "tid %s" % t.get("tid"))
        else:
            deep_diff(a[k], b[k], k, out=problems)
    return problems, notes


def fail_problems(problems, *runs):
    lines = problems[:25] + (["... %d more" % (len(problems) - 25)] if len(problems) > 25 else [])
    raise Fail("\n    ".join(lines) + "".join("\n    " + r.describe() for r in runs))


def recording_path(ctx, name="rec.pmsrec"):
    return os.path.join(ctx.dir, name)


def case_file_roundtrip(ctx, python, duration=4.0):
    """record --json -o F, then report F --json: the same document (what only one of them can know
    aside); report F (text) leads with the leak; F is 0600, whole, and within the size budget."""
    trigger = os.path.join(ctx.dir, "spread")
    open(trigger, "w").close()  # 40 more sites with long names from the start: a richer file
    p, truth = start_paced_target(ctx, python, trigger=trigger)
    pid, leak = truth["pid"], truth["leak"]
    path = recording_path(ctx)
    r = ctx.run_bin(record_args(pid, duration, extra=["-o", path]), timeout=duration + 30)
    rec = parse_report(r, pid, truth)
    problems = []
    if not rec["sites"] or not is_leak_site(rec["sites"][0], leak):
        problems.append("record's top site is %s, want %s (the report: %s)" % (
            site_label(rec["sites"][0]) if rec["sites"] else "none", leak["function"], sites_summary(rec)))
    # The file itself.
    problems += file_mode_problems(path, "the record file")
    data = read_bytes(path)
    rf = RecFile(data)
    problems += ["the record file: " + x for x in rf.complete_problems()]
    meta, end = rf.meta() or {}, rf.end() or {}
    want_meta = {"pid": pid, "python_version": truth["python"]["version"],
                 "python_build": truth["python"]["build"], "events": "growth",
                 "budget_per_sec": (rec.get("sampling") or {}).get("budget_per_sec"),
                 "max_depth": (rec.get("sampling") or {}).get("max_depth")}
    for k, v in want_meta.items():
        if meta.get(k) != v:
            problems.append("the file's META has %s %r, want %r" % (k, meta.get(k), v))
    if end.get("ended_by") != "duration" or not is_num(end.get("duration")) or \
            abs(end["duration"] - rec["duration"]) > 0.01:
        problems.append("the file's END is %s; record said duration %r" % (end, rec["duration"]))
    per_minute = rf.size * 60.0 / max(rec["duration"], 1e-3)
    if per_minute >= FILE_BUDGET_PER_MINUTE:
        problems.append("%d bytes for %.2fs of recording: %.0f KB a minute, over the 1 MB budget"
                        % (rf.size, rec["duration"], per_minute / 1e3))
    # report F --json: the same document.
    rj = ctx.run_bin(["report", path, "--json"])
    if rj.rc != 0:
        raise Fail("report of a complete file failed: %s" % rj.describe(True))
    rep = parse_json(rj)
    if not isinstance(rep, dict):
        raise Fail("report --json printed %s, not an object" % type(rep).__name__)
    problems += ["report --json: " + x for x in check_report_shape(rep, pid)]
    if rep.get("truncated") is not False:
        problems.append("report --json of a complete file has truncated %r, want false" % rep.get("truncated"))
    diff, notes = compare_reports(rec, rep)
    problems += ["record vs report: " + x for x in diff]
    if any(x.startswith("counters.") for x in diff):
        for name, d in (("record", rec), ("report", rep)):
            c = d.get("counters") or {}
            problems.append("(%s's document: counters.samples %s, its sites' samples add up to %s; "
                            "counters.grown %s, its sites' grown add up to %s)" % (
                                name, c.get("samples"), sum(x.get("samples") or 0 for x in d["sites"]),
                                c.get("grown"), sum(x.get("grown") or 0 for x in d["sites"])))
    # report F: text, led by the leak.
    rt = ctx.run_bin(["report", path])
    text = rt.out.decode("utf-8", "replace")
    if rt.rc != 0:
        problems.append("plain report failed: %s" % rt.describe(True))
    else:
        problems += ["plain report: " + x for x in text_top_row(text, leak["function"])]
        if str(pid) not in text:
            problems.append("plain report does not name pid %d" % pid)
        if TRUNCATED_TEXT.search(text + rt.err.decode("utf-8", "replace")):
            problems.append("plain report of a complete file says 'truncated'")
    problems += target_state_problems(pid, "the recording")
    if problems:
        fail_problems(problems, r, rj)
    return "%s (%.0f KB/minute); report --json = record --json over %d sites, %d candidates%s; text led by %s" % (
        rf.summary(), per_minute / 1e3, len(rec["sites"]), len(rec["leak_candidates"]),
        (" (" + "; ".join(notes) + ")") if notes else "", leak["function"])


def mono_of_epoch(t):
    """A CLOCK_REALTIME time as CLOCK_MONOTONIC (the targets' timelines)."""
    return t - (time.time() - time.monotonic())


def case_file_sigkill(ctx, python, seconds=3.0):
    """A recorder killed with SIGKILL: the target runs on, untraced; the file reads as truncated,
    with at most its last second lost, and names the leak with about the target's RSS growth."""
    p, truth = start_growth_target(ctx, python, "leak_large.py", "60")
    pid, leak = truth["pid"], truth["leak"]
    path = recording_path(ctx)
    b = ctx.start_bin(["record", "--pid", str(pid), "-o", path])
    if not wait_attached(ctx, b, timeout=10):
        r = ctx.finish_bin(b, timeout=5)
        raise Fail("the recorder did not attach: %s" % r.describe(True))
    time.sleep(seconds)
    t_kill = time.monotonic()
    os.kill(b.pid, signal.SIGKILL)
    b.wait()
    problems = []
    if b.returncode != -signal.SIGKILL:
        problems.append("the recorder ended with %s before SIGKILL reached it: %s"
                        % (b.returncode, short(ctx.bin_stderr(b))))
    if os.path.exists("/proc/%d" % b.pid):
        problems.append("/proc/%d (the recorder) still exists" % b.pid)
    try:
        os.killpg(b.pid, 0)
        problems.append("processes of the recorder's group %d are still alive" % b.pid)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass
    problems += target_state_problems(pid, "SIGKILL of the recorder")
    # The target runs on, at its pace.
    tl0 = Timeline(truth["timeline"])
    time.sleep(0.6)
    tl1 = Timeline(truth["timeline"])
    if p.poll() is not None:
        raise Fail("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    if not tl0.rows or not tl1.rows or tl1.rows[-1][2] - tl0.rows[-1][2] < 0.3 / truth["period"]:
        problems.append("the target stopped making progress after the recorder was killed (%s -> %s)"
                        % (tl0.rows[-1:], tl1.rows[-1:]))
    # The file.
    data = read_bytes(path)
    rf = RecFile(data)
    meta = rf.meta() or {}
    if rf.count(REC_END):
        problems.append("the file of a killed recorder has an END record")
    if rf.stop:
        problems.append("the file does not end at a whole record: %s" % rf.summary())
    problems += file_mode_problems(path, "the record file")
    rt = ctx.run_bin(["report", path])
    rj = ctx.run_bin(["report", path, "--json"])
    if rt.rc != 0 or rj.rc != 0:
        raise Fail("report of a recorder's file cut by SIGKILL: want exit 0\n    %s\n    %s\n    %s"
                   % (rt.describe(True), rj.describe(True), rf.summary()))
    text = rt.out.decode("utf-8", "replace")
    if not TRUNCATED_TEXT.search(text + rt.err.decode("utf-8", "replace")):
        problems.append("plain report does not say 'truncated'")
    problems += ["plain report: " + x for x in text_top_row(text, leak["function"])]
    rep = parse_json(rj)
    problems += ["report --json: " + x for x in check_report_shape(rep, pid)]
    if rep.get("truncated") is not True:
        problems.append("report --json has truncated %r, want true" % rep.get("truncated"))
    if problems:
        fail_problems(problems, rt, rj)
    # At most the last second lost; the leak's bytes against what the target measured.
    dur = rep["duration"]
    if not is_num(meta.get("start_time")):
        raise Fail("no start_time in the file's META: %s" % meta)
    t0 = mono_of_epoch(meta["start_time"])
    t1 = t0 + dur
    ran = t_kill - t0
    if dur < ran - 1.0 - 0.5 * SCALE:
        problems.append("the file ends at %.2fs; the recorder was killed %.2fs after it started (want at most "
                        "its last second lost)" % (dur, ran))
    if dur > ran + 0.2:
        problems.append("the file ends at %.2fs, after the recorder was killed (%.2fs)" % (dur, ran))
    tl = Timeline(truth["timeline"])
    if not tl.covers(t0, t1):
        raise Fail("the target's timeline does not cover [%.2f, %.2f]" % (t0, t1))
    measured = tl.rss(t1) - tl.rss(t0)
    top = rep["sites"][0] if rep["sites"] else {}
    ratio = top.get("bytes", 0) / float(measured) if measured > 0 else 0
    if measured < 1e6:
        problems.append("harness: the target grew only %s over the recorded %.2fs" % (mb(measured), dur))
    elif not is_leak_site(top, leak):
        problems.append("top site is %s, want %s" % (site_label(top) if top else "none", leak["function"]))
    elif not 0.5 <= ratio <= 1.5:
        problems.append("top site %s has %s = %.2f x the target's RSS growth %s over the recorded %.2fs "
                        "(want 0.5 to 1.5)" % (site_label(top), mb(top["bytes"]), ratio, mb(measured), dur))
    if problems:
        fail_problems(problems, rt, rj)
    return "killed %.2fs in: target untraced and running; %s; report: truncated at %.2fs, %s %s = %.2fx RSS growth %s" % (
        ran, rf.summary(), dur, site_label(top), mb(top["bytes"]), ratio, mb(measured))


def file_state(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    content = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = f.read()
    return (st.st_ino, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, link, content)


def case_file_refuse(ctx):
    """-o FILE never replaces an existing file without --force, never writes through a symbolic
    link (with --force neither), and refuses before it attaches."""
    ver, python = first_interpreter()
    ready = os.path.join(ctx.dir, "ready")
    p = python_target(ctx, python, "sleeper.py", ready)
    wait_file(ctx, ready, p, "ready file")
    pid = p.pid
    problems, notes = [], []

    def refused(args, what, must=None):
        r = ctx.run_bin(args)
        err = r.err.decode("utf-8", "replace")
        bad = []
        if not 1 <= r.rc <= 63:
            bad.append("want a non-zero exit status below 64")
        if r.out.strip():
            bad.append("want nothing on stdout")
        if not err.strip():
            bad.append("want a message on stderr")
        elif must and not re.search(must[0], err, re.I):
            bad.append("want the message to %s" % must[1])
        if re.search(r"recording pid", err):
            bad.append("it attached first (it said it was recording)")
        if bad:
            problems.append("%s: %s: %s" % (what, ", ".join(bad), r.describe(True)))
        problems.extend(target_state_problems(pid, what))
        return r

    # 1. An existing file, without --force.
    path = recording_path(ctx, "existing.pmsrec")
    with open(path, "wb") as f:
        f.write(b"precious: not a recording\n")
    os.utime(path, ns=(1000000000 * 10 ** 9, 1000000000 * 10 ** 9))
    before = file_state(path)
    for extra in ([], ["--json"]):
        r = refused(record_args(pid, 1, False, ["-o", path] + extra), "an existing file without --force",
                    (r"exist|force", "say it exists (or name --force)"))
        if file_state(path) != before:
            problems.append("the existing file was changed by `%s`" % r.cmd())
    notes.append("existing file: exit %d" % r.rc)
    # 2. --force replaces it (the documented long option; -f too).
    force = "--force"
    r = ctx.run_bin(record_args(pid, 1, True, ["-o", path, "--force"]), timeout=30)
    if r.rc == EXIT_USAGE and re.search(r"unrecognized|unknown option", r.err.decode("utf-8", "replace")):
        problems.append("`record ... --force` is rejected as an unknown option, though `record --help` "
                        "documents -f, --force: %s" % r.describe())
        force = "-f"
        r = ctx.run_bin(record_args(pid, 1, True, ["-o", path, "-f"]), timeout=30)
    if r.rc != 0:
        problems.append("%s over an existing regular file: want exit 0: %s" % (force, r.describe(True)))
    else:
        parse_report(r, pid)
        after = file_state(path)
        rf = RecFile(after[5] or b"")
        problems += ["after %s: %s" % (force, x) for x in rf.complete_problems()]
        problems += file_mode_problems(path, "the file replaced with %s" % force)
        notes.append("%s replaced it (%s)" % (force, rf.summary()))
    # 3. The long spelling of -o.
    path_long = recording_path(ctx, "long.pmsrec")
    r = ctx.run_bin(record_args(pid, 1, True, ["--output", path_long]), timeout=30)
    if r.rc != 0 or not os.path.exists(path_long):
        problems.append("`--output FILE` (documented in record --help as -o, --output FILE): want exit 0 and "
                        "the file: %s" % r.describe())
    # 4. A symbolic link to a file: refused, with --force too; the link and its target unchanged.
    fd, outside = tempfile.mkstemp(prefix="pms-e2e-linktarget-", dir="/tmp")
    try:
        os.write(fd, b"somefile: must stay as it is\n")
        os.close(fd)
        os.chmod(outside, 0o644)
        link = recording_path(ctx, "link.pmsrec")
        os.symlink(outside, link)
        before_link, before_target = file_state(link), file_state(outside)
        for extra in ([], [force]):
            r = refused(record_args(pid, 1, False, ["-o", link] + extra), "a symlink to %s%s" % (
                outside, " with " + force if extra else ""))
            if file_state(link) != before_link:
                problems.append("the symlink was changed by `%s`" % r.cmd())
            if file_state(outside) != before_target:
                problems.append("the symlink's target %s was changed by `%s`" % (outside, r.cmd()))
        notes.append("symlink: exit %d with %s" % (r.rc, force))
        # A dangling one: nothing may appear where it points.
        nowhere = outside + ".absent"
        dangling = recording_path(ctx, "dangling.pmsrec")
        os.symlink(nowhere, dangling)
        for extra in ([], [force]):
            r = refused(record_args(pid, 1, False, ["-o", dangling] + extra),
                        "a dangling symlink%s" % (" with " + force if extra else ""))
            if os.path.lexists(nowhere):
                problems.append("`%s` created %s through a dangling symlink" % (r.cmd(), nowhere))
                os.unlink(nowhere)
    finally:
        for f in (outside, outside + ".absent"):
            try:
                os.unlink(f)
            except OSError:
                pass
    # 5. A directory, with --force.
    d = recording_path(ctx, "dir.pmsrec")
    os.mkdir(d)
    refused(record_args(pid, 1, False, ["-o", d, force]), "a directory with " + force)
    if not os.path.isdir(d):
        problems.append("the directory %s is gone" % d)
    if p.poll() is not None:
        problems.append("the target died (rc %s)" % p.returncode)
    if problems:
        raise Fail("\n    ".join(problems))
    return "; ".join(notes) + "; dangling symlink and directory refused; target never attached"


def case_file_disk_full(ctx, python, duration=4.0):
    """The disk fills up during a recording: record exits 0 with its whole report and says that
    writing failed; the file reads as a recording cut at the last whole record."""
    if os.geteuid() != 0:
        raise Skip("needs root (mount -t tmpfs)")
    mnt = os.path.join(ctx.dir, "mnt")
    os.mkdir(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if m.returncode != 0:
        raise Skip("cannot mount a tmpfs: %s" % short(m.stderr, 200))
    b = None
    try:
        # Fill it, then free one page: the header, META and a tick or two fit; the ~20 KB of names
        # and sites the target starts (the trigger) once the recording is under way do not.
        fill = os.path.join(mnt, "fill")
        fd = os.open(fill, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            size = 0
            while True:
                try:
                    n = os.write(fd, b"\xff" * 4096)
                except OSError:
                    break
                if n <= 0:
                    break
                size += n
            os.ftruncate(fd, max(0, size - size % 4096 - 4096))
        finally:
            os.close(fd)
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        if not 0 < free <= 8192:
            raise Fail("harness: %d bytes free on the tmpfs after filling it" % free)
        trigger = os.path.join(ctx.dir, "spread")
        p, truth = start_paced_target(ctx, python, trigger=trigger)
        pid, leak = truth["pid"], truth["leak"]
        path = os.path.join(mnt, "rec.pmsrec")
        b = ctx.start_bin(record_args(pid, duration, extra=["-o", path]))
        if not wait_attached(ctx, b, timeout=10):
            r = ctx.finish_bin(b, timeout=5)
            raise Fail("the recorder did not attach: %s" % r.describe(True))
        time.sleep(1.6)  # a tick or two reach the file
        open(trigger, "w").close()
        r = ctx.finish_bin(b, timeout=duration + 30)
        b = None
        rec = parse_report(r, pid, truth)
        problems = []
        err = r.err.decode("utf-8", "replace")
        if not WRITE_FAILED.search(err):
            problems.append("no message on stderr saying that writing the file failed")
        if not rec["sites"] or not is_leak_site(rec["sites"][0], leak):
            problems.append("the report's top site is %s, want %s" % (
                site_label(rec["sites"][0]) if rec["sites"] else "none", leak["function"]))
        spread = [s for s in rec["sites"] if str(s.get("function")).startswith("spread_")]
        if not spread:
            problems.append("the report has none of the sites that began after the disk was full: it "
                            "does not cover the whole recording (%s)" % sites_summary(rec))
        if rec["duration"] < duration - 0.5:
            problems.append("the report covers %.2fs of a %gs recording" % (rec["duration"], duration))
        if problems:
            fail_problems(problems, r)
        rf = RecFile(read_bytes(path))
        if not rf.magic_ok or not rf.records or rf.records[0][0] != REC_META:
            problems.append("the file is not a recording cut short: %s" % rf.summary())
        if rf.stop or rf.whole_end != rf.size:
            problems.append("the file does not end at its last whole record (%s)" % rf.summary())
        if rf.count(REC_END):
            problems.append("the file has an END record although writing failed")
        rr = ctx.run_bin(["report", path, "--json"])
        if rr.rc != 0:
            problems.append("report of the file cut by the full disk: want exit 0: %s" % rr.describe(True))
        else:
            rep = parse_json(rr)
            if rep.get("truncated") is not True:
                problems.append("report --json has truncated %r, want true" % rep.get("truncated"))
            if not is_num(rep.get("duration")) or rep["duration"] >= rec["duration"] - 0.5:
                problems.append("the file's report covers %r s; writing failed about %.1fs into %.2fs"
                                % (rep.get("duration"), 1.6, rec["duration"]))
            if rep.get("sites") and not is_leak_site(rep["sites"][0], leak):
                problems.append("the file's top site is %s, want %s" % (site_label(rep["sites"][0]),
                                                                        leak["function"]))
        rt = ctx.run_bin(["report", path])
        if rt.rc != 0:
            problems.append("plain report of the file: want exit 0: %s" % rt.describe(True))
        if problems:
            fail_problems(problems, r)
        said = [l for l in err.splitlines() if WRITE_FAILED.search(l)][0].replace(path, "F").strip()
        return "record: exit 0, the whole %.2fs (%d sites) on stdout, and %r; the file, %s, reads as cut at %.2fs" % (
            rec["duration"], len(rec["sites"]), short(said, 100), rf.summary(), rep["duration"])
    finally:
        if b is not None:
            killpg(b)
            b.wait()
        u = subprocess.run(["umount", mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if u.returncode != 0:
            ctx.kill_all()
            u = subprocess.run(["umount", mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if u.returncode != 0:
                subprocess.run(["umount", "-l", mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def case_report_bad_files(ctx, python):
    """report FILE on files that are missing, foreign, refused, cut anywhere or damaged: the
    documented exit status (1, 7, 0), a message, and never a crash."""
    problems, notes = [], []
    bad_dir = os.path.join(ctx.dir, "bad")
    os.mkdir(bad_dir)

    def expect_refused(path, what, want_rc, must=None, modes=([], ["--json"])):
        for extra in modes:
            problems.extend(expect_error(ctx, ["report", path] + extra, want_rc, what, must))

    # 1. A missing file.
    expect_refused(os.path.join(bad_dir, "no-such.pmsrec"), "a missing file", 1,
                   (r"no such|not exist|cannot open|No such", "say it does not exist"))
    # 2. Files that are not recordings, or that end before a whole META.
    rnd = random.Random(20261)
    garbage = bytes(rnd.getrandbits(8) for _ in range(8192))
    header = b"PYMEMSPY" + struct.pack("<II", 1, 0)
    refused = [("garbage", garbage, (r"PYMEMSPY|not a|recording|magic", "say it is not a recording")),
               ("text", b"pid 4242: not a recording\n" * 40, None),
               ("empty", b"", (r"empty", "say it is empty")),
               ("magic only", b"PYMEMSPY", None),
               ("header only", header, None),
               ("half a META", header + struct.pack("<II", REC_META, 60) + b"\x01" * 20, None),
               ("version 2", b"PYMEMSPY" + struct.pack("<II", 2, 0) + garbage[:200],
                (r"(?<![\d.])2(?![\d.])", "name version 2")),
               ("version 0xffffffff", b"PYMEMSPY" + struct.pack("<II", 0xFFFFFFFF, 0), None)]
    for name, data, must in refused:
        f = os.path.join(bad_dir, name.replace(" ", "-"))
        with open(f, "wb") as fh:
            fh.write(data)
        expect_refused(f, "%s (%d bytes)" % (name, len(data)), EXIT_CORRUPT, must)
    garbage_path = os.path.join(bad_dir, "garbage")
    # 3. A real recording, 40 sites with long names from the start: ~20 KB.
    trigger = os.path.join(ctx.dir, "spread")
    open(trigger, "w").close()
    p, truth = start_paced_target(ctx, python, trigger=trigger)
    pid = truth["pid"]
    path = recording_path(ctx)
    r = ctx.run_bin(record_args(pid, 3.0, extra=["-o", path]), timeout=35)
    parse_report(r, pid, truth)
    killpg(p)
    data = read_bytes(path)
    rf = RecFile(data)
    if rf.complete_problems():
        raise Fail("the recording to cut is not whole: %s; %s" % ("; ".join(rf.complete_problems()), rf.summary()))
    for extra in (["--diff", path, garbage_path], ["--diff", garbage_path, path]):
        problems.extend(expect_error(ctx, ["report"] + extra, EXIT_CORRUPT, "report " + " ".join(
            os.path.basename(x) for x in extra)))
    # Cut at every 1 KiB and at odd places: inside the header, META, the first records, the END.
    meta_end = rf.records[0][2]
    end_off = rf.records[-1][1]
    cuts = set(range(0, rf.size, 1024))
    cuts |= {1, 7, 8, 12, 15, 16, 17, 20, 23, meta_end - 5, meta_end - 1, meta_end, meta_end + 1,
             end_off - 1, end_off, end_off + 3, end_off + 8, rf.size - 4, rf.size - 1}
    for bnd in rf.boundaries[1:8]:
        cuts |= {bnd - 1, bnd + 1, bnd + 9}
    cuts |= set(rnd.randrange(1, rf.size) for _ in range(8))
    cuts = sorted(c for c in cuts if 0 <= c < rf.size)
    cut_path = os.path.join(bad_dir, "cut.pmsrec")
    rcs = {}
    zero_sites = [0, 0]  # cuts whose JSON lists sites with nothing charged yet, most such sites
    last_dur = -1.0
    for i, c in enumerate(cuts):
        with open(cut_path, "wb") as fh:
            fh.write(data[:c])
        what = "the recording cut at byte %d of %d" % (c, rf.size)
        rj = ctx.run_bin(["report", cut_path, "--json"], timeout=10)
        rcs[rj.rc] = rcs.get(rj.rc, 0) + 1
        if rj.rc not in (0, EXIT_CORRUPT):
            problems.append("%s: want exit 0 or 7: %s" % (what, rj.describe(True)))
            continue
        if rj.rc != 0 and rj.out.strip():
            problems.append("%s: exit %d with output on stdout: %s" % (what, rj.rc, rj.describe(True)))
        if c < meta_end:
            if rj.rc != EXIT_CORRUPT or not rj.err.strip():
                problems.append("%s (before META ends at %d): want exit 7 and a message: %s"
                                % (what, meta_end, rj.describe(True)))
            continue
        if rj.rc != 0:
            problems.append("%s (after a whole META): a cut file is reported, exit 0: %s" % (what, rj.describe(True)))
            continue
        try:
            doc = parse_json(rj)
        except Fail as e:
            problems.append("%s: %s" % (what, str(e).split("\n")[0]))
            continue
        # A file cut after a SITE record but before the TICK that charges it: the site may be
        # listed with nothing (no bytes, no samples, no stack yet); anything else has its stack.
        zero = [x for x in doc.get("sites") or [] if isinstance(x, dict) and x.get("stack") == [] and
                not x.get("grown") and not x.get("samples") and not x.get("bytes")]
        if zero:
            zero_sites[0] += 1
            zero_sites[1] = max(zero_sites[1], len(zero))
        shape = check_report_shape(dict(doc, sites=[x for x in doc.get("sites") or [] if x not in zero]), pid)
        if shape:
            problems.append("%s: %s" % (what, "; ".join(shape[:3])))
        if doc.get("truncated") is not True:
            problems.append("%s: truncated is %r, want true" % (what, doc.get("truncated")))
        vb = (doc.get("recording") or {}).get("valid_bytes")
        if vb is not None and vb != rf.last_boundary(c):
            problems.append("%s: recording.valid_bytes %r, but the last whole record ends at %d"
                            % (what, vb, rf.last_boundary(c)))
        if is_num(doc.get("duration")):
            if doc["duration"] < last_dur - 1e-9:
                problems.append("%s: duration %.3f, less than %.3f for a shorter cut" % (what, doc["duration"], last_dur))
            last_dur = doc["duration"]
        if i % 3 == 0:
            rt = ctx.run_bin(["report", cut_path], timeout=10)
            if rt.rc != 0 or not TRUNCATED_TEXT.search((rt.out + rt.err).decode("utf-8", "replace")):
                problems.append("%s: plain report: want exit 0 and 'truncated': %s" % (what, rt.describe(True)))
    notes.append("%d cuts of %s: exit %s" % (len(cuts), rf.summary(), ", ".join(
        "%s x%d" % kv for kv in sorted(rcs.items()))))
    if zero_sites[0]:
        notes.append("in %d cuts (before the first whole TICK) --json lists up to %d sites with no bytes, "
                     "samples or stack, which the text report leaves out" % tuple(zero_sites))
    # 4. Zeros from a record's CRC on (a crash before the last blocks reached the disk): cut, exit 0.
    ticks = [rec for rec in rf.records if rec[0] == REC_TICK]
    mid = ticks[len(ticks) // 2]
    zero_path = os.path.join(bad_dir, "zero-tail.pmsrec")
    for name, content, want_vb in (
            ("zeros from a TICK's CRC to the end", data[:mid[2] - 4] + bytes(rf.size - mid[2] + 4), mid[1]),
            ("8 KiB of zeros after a whole TICK", data[:mid[2]] + bytes(8192), mid[2])):
        with open(zero_path, "wb") as fh:
            fh.write(content)
        rj = ctx.run_bin(["report", zero_path, "--json"], timeout=10)
        if rj.rc != 0:
            problems.append("%s: want exit 0 (cut, not damaged): %s" % (name, rj.describe(True)))
            continue
        doc = parse_json(rj)
        vb = (doc.get("recording") or {}).get("valid_bytes")
        if doc.get("truncated") is not True or (vb is not None and vb != want_vb):
            problems.append("%s: truncated %r, valid_bytes %r (want true, %d)" % (name, doc.get("truncated"), vb, want_vb))
    # 5. Damage: a flipped payload byte, a length over 16 MiB: exit 7, the report of what precedes
    # it, a message naming the byte.
    dmg_path = os.path.join(bad_dir, "damaged.pmsrec")
    for name, pos, patch in (("a flipped byte in a TICK", mid[1] + 12, None),
                             ("a length of 1 GiB", mid[1] + 4, struct.pack("<I", 1 << 30))):
        b = bytearray(data)
        if patch is None:
            b[pos] ^= 0xFF
        else:
            b[pos:pos + len(patch)] = patch
        with open(dmg_path, "wb") as fh:
            fh.write(bytes(b))
        rj = ctx.run_bin(["report", dmg_path, "--json"], timeout=10)
        err = rj.err.decode("utf-8", "replace")
        nums = [int(x) for x in re.findall(r"\d+", err)]
        if rj.rc != EXIT_CORRUPT:
            problems.append("%s at byte %d: want exit 7: %s" % (name, pos, rj.describe(True)))
        elif not any(mid[1] <= n <= pos for n in nums):
            problems.append("%s at byte %d (record at %d): the message names no byte in between: %s"
                            % (name, pos, mid[1], rj.describe()))
        else:
            try:
                doc = parse_json(rj)
                ok = isinstance(doc, dict) and not check_report_shape(doc, pid)
            except Fail:
                ok = False
            if not ok:
                problems.append("%s: want the report of what precedes the damage on stdout: %s"
                                % (name, rj.describe(True)))
    if problems:
        raise Fail("\n    ".join(problems[:30]) + ("\n    ... %d more" % (len(problems) - 30) if len(problems) > 30 else ""))
    return "missing: exit 1; %d refused files: exit 7; %s; zero tails read as cut; damage: exit 7 with a report" % (
        len(refused), "; ".join(notes))


def diff_site(doc, leak):
    for s in doc.get("sites") or []:
        if isinstance(s, dict) and site_key(s) == (leak["function"], leak["file"], leak["line"]):
            return s
    return None


def case_report_diff(ctx, python, slow=0.04, fast=0.01, duration=3.0):
    """Two recordings of the same program, its leak paced 4x faster in the second: report --diff
    names the leaking site first, with a positive change of rate (negative the other way)."""
    pa, ta = start_paced_target(ctx, python, period=slow, tag="-slow")
    pb, tb = start_paced_target(ctx, python, period=fast, tag="-fast")
    leak = ta["leak"]
    if site_key(leak) != site_key(tb["leak"]):
        raise Fail("harness: the two targets disagree on the leaking site: %s vs %s" % (leak, tb["leak"]))
    A, B = recording_path(ctx, "slow.pmsrec"), recording_path(ctx, "fast.pmsrec")
    ba = ctx.start_bin(record_args(ta["pid"], duration, extra=["-o", A]))
    bb = ctx.start_bin(record_args(tb["pid"], duration, extra=["-o", B]))
    ra, rb = ctx.finish_bin(ba, duration + 30), ctx.finish_bin(bb, duration + 30)
    da, db = parse_report(ra, ta["pid"], ta), parse_report(rb, tb["pid"], tb)
    sa, sb = diff_site(da, leak), diff_site(db, leak)
    if not sa or not sb or sb["rate"] < 2 * sa["rate"]:
        raise Fail("harness: the leak's rates are %s (slow) and %s (fast); want the fast one over twice the slow"
                   % (mb(sa and sa["rate"]), mb(sb and sb["rate"])))
    problems = []
    rd = ctx.run_bin(["report", "--diff", A, B, "--json"])
    if rd.rc != 0:
        raise Fail("report --diff: %s" % rd.describe(True))
    d = parse_json(rd)
    if not isinstance(d, dict) or d.get("schema") != "pymemspy.diff/1":
        raise Fail("report --diff --json: schema %r, want 'pymemspy.diff/1': %s"
                   % (d.get("schema") if isinstance(d, dict) else d, rd.describe(True)))
    for side, t, pth in (("a", ta, A), ("b", tb, B)):
        info = d.get(side)
        if not isinstance(info, dict) or info.get("pid") != t["pid"]:
            problems.append("%s is %s, want the recording of pid %d (%s)" % (side, json.dumps(info)[:200], t["pid"], pth))
    sites = d.get("sites")
    if not isinstance(sites, list) or not sites:
        raise Fail("report --diff --json has no sites: %s" % rd.describe(True))
    s = diff_site(d, leak)
    change = None
    if s is None:
        problems.append("the leaking site %s is not in the diff's sites" % fmt(leak))
    else:
        change = s.get("rate_change")
        if not is_num(change) or change <= 0:
            problems.append("the leaking site's rate_change is %r, want positive" % change)
        elif not _num_equal(change, sb["rate"] - sa["rate"], 0.02):
            problems.append("the leaking site's rate_change is %s/s; the recordings say %s/s - %s/s"
                            % (mb(change), mb(sb["rate"]), mb(sa["rate"])))
        if s.get("status") in ("new", "gone"):
            problems.append("the leaking site is marked %r; it is in both recordings" % s.get("status"))
        for k, v in (("bytes_a", sa["bytes"]), ("bytes_b", sb["bytes"])):
            if s.get(k) != v:
                problems.append("the leaking site's %s is %r; the recording says %r" % (k, s.get(k), v))
        if site_key(sites[0]) != site_key(leak):
            problems.append("the first site is %s, not the leak (rate change %s/s)"
                            % (site_label(sites[0]), mb(change)))
    # The other way round, the change is negative.
    rr = ctx.run_bin(["report", "--diff", B, A, "--json"])
    s2 = diff_site(parse_json(rr), leak) if rr.rc == 0 else None
    if not s2 or not is_num(s2.get("rate_change")) or s2["rate_change"] >= 0:
        problems.append("--diff B A: the leaking site's rate_change is %r, want negative: %s"
                        % (s2 and s2.get("rate_change"), rr.describe()))
    # Text: the first row of the table names the leak.
    rt = ctx.run_bin(["report", "--diff", A, B])
    text = rt.out.decode("utf-8", "replace")
    rows = [l for l in text.splitlines() if re.match(r"^\s*1\s", l)]
    label = "%s (%s:%d)" % (leak["function"], leak["file"], leak["line"])
    if rt.rc != 0:
        problems.append("plain report --diff: %s" % rt.describe(True))
    elif not rows or label not in rows[0] or "+" not in rows[0]:
        problems.append("plain report --diff: the first row does not name %s with a + change: %r\n    %s"
                        % (label, rows[:1], rt.describe(True)))
    if problems:
        fail_problems(problems, rd)
    return "leak %s/s -> %s/s: diff's rate_change %s/s, first in JSON and text; reversed: %s/s" % (
        mb(sa["rate"]), mb(sb["rate"]), mb(change), mb(s2["rate_change"]))


# --- record --events malloc|pymalloc: targets that know every allocation they make ----------------
# alloc_known.py and alloc_nogil.py allocate known sizes from known functions, but only after "go"
# on stdin, which the harness sends once pymemspy is attached; they write what they allocated, kept
# and freed (exactly) when their work is done. The known/* cases stop the recording with SIGINT
# only then, so the recording saw exactly that work and the truth needs no window arithmetic.
# Sampling: an allocation of s bytes is sampled with p = 1 - exp(-s/rate) and counted s/p bytes
# (Horvitz-Thompson), so over a known population the estimate's variance is sum s^2 (1-p)/p; the
# checks accept |estimate - truth| <= ALLOC_SIGMAS sigma + a small slack (a false failure about once
# in 16000 checks), and the reported 95% half-widths must agree with that sigma within 2x.
ALLOC_SIGMAS = 4.0
ALLOC_RATE_DEFAULT = 65536
ALLOC_COUNTERS = ("alloc_calls", "free_calls", "alloc_samples", "frees_matched", "nested_calls", "live_map_full")
ALLOC_SITE_NUMS = ("allocated", "freed", "live", "allocated_error", "live_error", "allocated_count",
                   "freed_count", "live_count")
# Builds whose coverage of CPython's allocator is partial: Debian's python3.11 (PGO+LTO) copies
# pymalloc's fast path into its callers (165 places), so the probes on the allocator table's functions
# see only the calls that were not inlined (bytes(100) goes through PyObject_Calloc and is seen; dicts
# and every PyObject_Free fast path are not). pymemspy says coverage unknown (null) there.
PYMALLOC_PARTIAL = ("deb-3.11",)


def ht_sigma(population, rate):
    """Standard deviation of the Horvitz-Thompson estimate of the bytes of `population`, a list of
    [size, count]: sum count * s^2 (1-p)/p with p = 1 - exp(-s/rate)."""
    import math
    var = 0.0
    for s, n in population:
        p = -math.expm1(-float(s) / rate)
        var += n * s * s * (1 - p) / p
    return math.sqrt(var)


def check_alloc_shape(doc, events, rate):
    """Schema problems of the allocator sources' additions to a report."""
    p = []
    smp = doc.get("sampling")
    if not isinstance(smp, dict):
        return ["sampling is %r, not an object" % (smp,)]
    if smp.get("rate") != rate:
        p.append("sampling.rate is %r, want %d" % (smp.get("rate"), rate))
    if not isinstance(smp.get("allocator"), str) or not smp["allocator"]:
        p.append("sampling.allocator is %r" % (smp.get("allocator"),))
    cov = smp.get("coverage", "absent")
    if cov is not None and not (is_num(cov) and 0 <= cov <= 1):
        p.append("sampling.coverage is %r, want a number 0..1 or null" % (cov,))
    if not is_int(smp.get("max_depth")):
        p.append("sampling.max_depth is %r" % (smp.get("max_depth"),))
    cnt = doc.get("counters") or {}
    for k in ALLOC_COUNTERS:
        if not is_int(cnt.get(k)) or cnt[k] < 0:
            p.append("counters.%s is %r, want an integer >= 0" % (k, cnt.get(k)))
    for i, s in enumerate(doc.get("sites") or []):
        where = "sites[%d] %s" % (i, site_label(s))
        for k in ALLOC_SITE_NUMS:
            # live_count is allocated_count - freed_count in floating point: a site whose every
            # sample was freed can come out at -1e-11 (known, reported): not held against it here.
            floor = -1e-6 * max(1.0, s.get("allocated_count") or 0) if k == "live_count" else 0
            if not is_num(s.get(k)) or s[k] < floor:
                p.append("%s: %s is %r, want a number >= 0" % (where, k, s.get(k)))
        for k in ("live_samples", "samples"):
            if not is_int(s.get(k)) or s[k] < 0:
                p.append("%s: %s is %r, want an integer >= 0" % (where, k, s.get(k)))
        if p:
            break
        if abs(s["bytes"] - s["live"]) > 1:
            p.append("%s: bytes %r is not live %r" % (where, s["bytes"], s["live"]))
        if abs(s["allocated"] - s["freed"] - s["live"]) > 1 + 1e-6 * s["allocated"]:
            p.append("%s: allocated %r - freed %r != live %r" % (where, s["allocated"], s["freed"], s["live"]))
        if s["live_samples"] == 0 and abs(s["live"]) > 1 and not cnt.get("live_map_full") and \
                not cnt.get("allocs_untracked"):
            p.append("%s: live is %r with no live sample (and every sample followed)" % (where, s["live"]))
        if s["live_samples"] > s["samples"]:
            p.append("%s: live_samples %d > samples %d" % (where, s["live_samples"], s["samples"]))
        ol = s.get("oldest_live")
        if not isinstance(ol, list):
            p.append("%s: oldest_live is %r, not a list" % (where, ol))
            continue
        if s["live_samples"] and not ol:
            p.append("%s: %d live samples but oldest_live is empty" % (where, s["live_samples"]))
        for j, o in enumerate(ol):
            if not isinstance(o, dict) or not all(is_num(o.get(k)) for k in ("allocated_at", "age")) or \
                    not is_int(o.get("size")) or not is_int(o.get("tid")):
                p.append("%s: oldest_live[%d] is %r" % (where, j, o))
                break
            if not (0 <= o["allocated_at"] <= doc["duration"] + 0.5 and 0 <= o["age"] <= doc["duration"] + 0.5):
                p.append("%s: oldest_live[%d] allocated_at %r age %r outside the %.2fs recording"
                         % (where, j, o["allocated_at"], o["age"], doc["duration"]))
            if j and o["age"] > ol[j - 1]["age"] + 1e-6:
                p.append("%s: oldest_live is not sorted oldest first: %r" % (where, ol))
                break
        if len(p) > 20:
            break
    return p


def start_alloc_target(ctx, python, script, *args, env_extra=None):
    """Start alloc_known.py/alloc_nogil.py; return (proc, truth) once it waits for go."""
    truth_path = os.path.join(ctx.dir, "truth.json")
    p = python_target(ctx, python, script, truth_path, *[str(a) for a in args], stdin=subprocess.PIPE,
                      env_extra=env_extra)
    wait_file(ctx, truth_path, p, "truth file")
    with open(truth_path, encoding="utf-8") as f:
        truth = json.load(f)
    truth["path"] = truth_path
    return p, truth


def alloc_record(ctx, p, truth, events, rate=None, duration=30.0, stop=True, extra=()):
    """Start record, wait until it is attached, say go, wait until the work is done; then (stop)
    SIGINT it, or let --duration end it. Returns (run, done)."""
    args = ["record", "--pid", str(truth["pid"]), "--events", events, "--duration", "%g" % duration, "--json"]
    args += list(extra)
    if rate is not None:
        args += ["--rate", str(rate)]
    b = ctx.start_bin(args)
    if not wait_attached(ctx, b, timeout=10):
        r = ctx.finish_bin(b, timeout=5)
        raise Fail("pymemspy never attached (no BPF links): %s" % r.describe(True))
    time.sleep(0.3)  # past the last probe's attachment, whatever wait_attached saw
    t_go = time.monotonic()
    send_line(p)
    done_path = truth["path"] + ".done"
    wait_file(ctx, done_path, p, "done file (the work)", timeout=40)
    with open(done_path, encoding="utf-8") as f:
        done = json.load(f)
    if stop:
        time.sleep(0.1)
        try:
            os.kill(b.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    r = ctx.finish_bin(b, timeout=duration + 20)
    r.t_go = t_go
    return r, done


def find_site(doc, info):
    """The site of `info`'s allocating line (function, file, line), or None."""
    for s in doc["sites"]:
        if s.get("function") == info["function"] and s.get("file") == info["file"] and s.get("line") == info["line"]:
            return s
    return None


def within(est, true, sigma, slack):
    return abs(est - true) <= ALLOC_SIGMAS * sigma + slack


def err_ratio_problem(what, reported, sigma):
    """The reported 95% half-width against 1.96 sigma of the known population."""
    if sigma <= 0:
        return []
    ratio = reported / (1.96 * sigma)
    if not 0.5 <= ratio <= 2.0:
        return ["%s is %.0f, %.2fx the 95%% half-width the known sizes give (%.0f)"
                % (what, reported, ratio, 1.96 * sigma)]
    return []


def alloc_context(r, doc):
    cnt = doc.get("counters") or {}
    return "report: %s\n    sampling %s; counters %s\n    stderr: %s" % (
        "; ".join("%s live %s (+/- %s) alloc %s" % (site_label(s), mb(s.get("live")), mb(s.get("live_error")),
                                                     mb(s.get("allocated"))) for s in doc["sites"][:4]),
        json.dumps(doc.get("sampling"), sort_keys=True),
        " ".join("%s=%s" % (k, cnt.get(k)) for k in ALLOC_COUNTERS), short(r.err, 600) or "(empty)")


def check_known(r, doc, truth, done, events, rate, partial):
    """alloc_known.py: keep is the top live site with its estimates within the sampling error of the
    truth, churn's allocated too and its live near 0. Returns (problems, notes)."""
    problems, notes = [], []
    fk, fc = truth["functions"]["keep"], truth["functions"]["churn"]
    keep_pop, churn_pop = done["keep"]["sizes"], done["churn"]["sizes"]
    sk, sc = ht_sigma(keep_pop, rate), ht_sigma(churn_pop, rate)
    # A debug build's hooks ask malloc for 24-48 bytes more than the object (alloc_known.py keeps
    # bytes objects of 133 B or 4033 B): with --events malloc that is what the probes see.
    hooks = 0.03 if events == "malloc" and truth["python"]["build"] == "debug" else 0.0
    slack_k = 2 * truth["keep_size"] + (0.005 + hooks) * done["keep"]["live"]
    slack_c = 2 * max(truth["churn_sizes"]) + (0.005 + hooks) * done["churn"]["allocated"]
    sites = doc["sites"]
    top = sites[0] if sites else None
    sk_site, sc_site = find_site(doc, fk), find_site(doc, fc)
    if partial:
        # Only some of the allocations are seen, frees even fewer: no estimate can be held to the
        # truth from below, none can exceed it (the probes cannot see allocations that did not happen).
        if doc["sampling"].get("coverage") is not None:
            problems.append("sampling.coverage is %r on a build that inlines pymalloc's fast path (want null)"
                            % doc["sampling"].get("coverage"))
        if sk_site is None:
            problems.append("no site %s (%s:%d): the bytes(100) it keeps go through PyObject_Calloc, which "
                            "this build does not inline" % (fk["function"], os.path.basename(fk["file"]), fk["line"]))
        else:
            if sk_site["allocated"] > done["keep"]["allocated"] + ALLOC_SIGMAS * sk + slack_k:
                problems.append("%s allocated %s, more than it allocated (%s) + %.0f sigma (%s)" % (
                    site_label(sk_site), mb(sk_site["allocated"]), mb(done["keep"]["allocated"]), ALLOC_SIGMAS, mb(sk)))
            if sk_site["live"] <= 0 or sk_site["freed"] > slack_k + ALLOC_SIGMAS * sk:
                problems.append("%s: live %s, freed %s; it kept everything it allocated"
                                % (site_label(sk_site), mb(sk_site["live"]), mb(sk_site["freed"])))
            notes.append("partial coverage: %s live %s of %s kept" % (fk["function"], mb(sk_site["live"]),
                                                                        mb(done["keep"]["live"])))
        return problems, notes
    cov = doc["sampling"].get("coverage")
    if cov != 1:
        problems.append("sampling.coverage is %r, want 1 (every allocation goes through the probed functions)" % cov)
    if top is None or key(top) != key(fk):
        problems.append("top site is %s, want %s (%s:%d)%s" % (
            site_label(top) if top else "none", fk["function"], os.path.basename(fk["file"]), fk["line"],
            "; it is sites[%d]" % sites.index(sk_site) if sk_site else "; it is absent"))
    if sk_site is not None:
        sp = compare_frames(sk_site.get("stack") or [], done["stacks"]["keep"])
        if sp:
            problems.append("%s's stack: %s" % (fk["function"], "; ".join(sp)))
        for k in ("live", "allocated"):
            if not within(sk_site[k], done["keep"][k], sk, slack_k):
                problems.append("%s %s %s, truth %s: off by %.1f sigma (sigma %s, slack %s)" % (
                    site_label(sk_site), k, mb(sk_site[k]), mb(done["keep"][k]),
                    (sk_site[k] - done["keep"][k]) / sk, mb(sk), mb(slack_k)))
        if sk_site["freed"] > slack_k:
            problems.append("%s freed %s; it freed nothing" % (site_label(sk_site), mb(sk_site["freed"])))
        problems += err_ratio_problem("%s live_error" % fk["function"], sk_site["live_error"], sk)
        ol = sk_site["oldest_live"]
        if ol and (ol[0]["tid"] != truth["tid"] or
                   not truth["keep_size"] <= ol[0]["size"] <= truth["keep_size"] * (1 + hooks) + 64):
            problems.append("%s's oldest_live[0] is %r: want tid %d, size %d" % (
                fk["function"], ol[0], truth["tid"], truth["keep_size"]))
        threads = dict((t["tid"], t["bytes"]) for t in doc["threads"])
        if threads.get(truth["tid"], 0) < sk_site["live"] - 1:
            problems.append("threads gives the main thread %d %s, less than %s's live %s" % (
                truth["tid"], mb(threads.get(truth["tid"])), fk["function"], mb(sk_site["live"])))
        notes.append("%s live %s (truth %s, %+.1f sigma)" % (fk["function"], mb(sk_site["live"]),
                                                              mb(done["keep"]["live"]),
                                                              (sk_site["live"] - done["keep"]["live"]) / sk))
    if sc_site is None:
        problems.append("no site %s (%s:%d)" % (fc["function"], os.path.basename(fc["file"]), fc["line"]))
    else:
        if not within(sc_site["allocated"], done["churn"]["allocated"], sc, slack_c):
            problems.append("%s allocated %s, truth %s: off by %.1f sigma (sigma %s)" % (
                site_label(sc_site), mb(sc_site["allocated"]), mb(done["churn"]["allocated"]),
                (sc_site["allocated"] - done["churn"]["allocated"]) / sc, mb(sc)))
        # Nothing stays: a sampled allocation whose free was missed would show here.
        if abs(sc_site["live"]) > 0.02 * done["churn"]["allocated"] + slack_c:
            problems.append("%s live %s; it freed everything it allocated (%s)" % (
                site_label(sc_site), mb(sc_site["live"]), mb(done["churn"]["allocated"])))
        problems += err_ratio_problem("%s allocated_error" % fc["function"], sc_site["allocated_error"], sc)
        notes.append("%s alloc %s (truth %s, %+.1f sigma), live %s" % (
            fc["function"], mb(sc_site["allocated"]), mb(done["churn"]["allocated"]),
            (sc_site["allocated"] - done["churn"]["allocated"]) / sc, mb(sc_site["live"])))
    fx = truth["functions"].get("extra")
    if fx is not None:  # churn_dicts: sizes unknown, nothing stays (a dict keys free list may hold a few)
        sx = find_site(doc, fx)
        if sx is None:
            problems.append("no site %s (%s:%d)" % (fx["function"], os.path.basename(fx["file"]), fx["line"]))
        elif sx["live"] > ALLOC_SIGMAS * sx["live_error"] + 0.02 * sx["allocated"] + 16384:
            problems.append("%s live %s (+/- %s) of %s allocated; it keeps nothing" % (
                site_label(sx), mb(sx["live"]), mb(sx["live_error"]), mb(sx["allocated"])))
    cnt = doc["counters"]
    for k in ("alloc_samples", "frees_matched", "alloc_calls", "free_calls"):
        if cnt.get(k, 0) <= 0:
            problems.append("counters.%s is %r, want > 0" % (k, cnt.get(k)))
    if cnt.get("live_map_full"):
        problems.append("counters.live_map_full is %r: the live map filled up with a few thousand samples"
                        % cnt.get("live_map_full"))
    want_calls = done["count"] * (1 + len(truth["churn_sizes"]))
    if is_int(cnt.get("alloc_calls")) and cnt["alloc_calls"] < want_calls:
        problems.append("counters.alloc_calls is %d; the work alone made %d" % (cnt["alloc_calls"], want_calls))
    return problems, notes


def case_alloc_known(ctx, python, iid, events, rate=None, preload=None, attach=None):
    """record --events malloc|pymalloc on alloc_known.py: see check_known. preload: (library path,
    allocator name) of a malloc loaded in libc's place with LD_PRELOAD, which must be the one probed.
    attach: record --attach MODE (the fallbacks for older kernels, which this one would not pick),
    which sampling.attach must then name."""
    mode = "tailcalls" if preload == "tailcalls" else "malloc" if events == "malloc" else "pymalloc"
    if preload == "tailcalls":
        preload = None
    p, truth = start_alloc_target(ctx, python, "alloc_known.py", mode, 60,
                                  env_extra={"LD_PRELOAD": preload[0]} if preload else None)
    r, done = alloc_record(ctx, p, truth, events, rate, extra=["--attach", attach] if attach else [])
    doc = parse_report(r, truth["pid"], truth, events=events)
    rate = rate or ALLOC_RATE_DEFAULT
    problems = check_alloc_shape(doc, events, rate)
    got_attach = (doc.get("sampling") or {}).get("attach")
    if got_attach != (attach or "session"):
        problems.append("sampling.attach is %r, want %r" % (got_attach, attach or "session"))
    if preload and (doc.get("sampling") or {}).get("allocator") != preload[1]:
        problems.append("sampling.allocator is %r, want %r (LD_PRELOAD=%s)"
                        % ((doc.get("sampling") or {}).get("allocator"), preload[1], preload[0]))
    if not problems:
        if doc.get("ended_by") not in (None, "signal"):
            problems.append("ended_by is %r after SIGINT" % doc.get("ended_by"))
        pr, notes = check_known(r, doc, truth, done, events, rate, iid in PYMALLOC_PARTIAL and events == "pymalloc")
        problems += pr
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    problems += target_state_problems(p.pid, "the recording")
    if problems:
        raise Fail("`%s`:\n    %s\n    %s" % (r.cmd(), "\n    ".join(problems[:25]), alloc_context(r, doc)))
    send_line(p, b"stop\n")
    rc, out, err = wait_target_exit(ctx, p, 20)
    if rc != 0:
        raise Fail("the target failed after the recording: rc %s %s %s" % (rc, short(out), short(err)))
    return "%s; work %.2fs" % (", ".join(notes), done["ended"] - done["started"])


def case_alloc_nogil(ctx, python):
    """--events malloc on alloc_nogil.py: malloc() called through ctypes without the GIL, and a
    bytearray grown by realloc, each in its own thread: both charged to their Python function and
    to their thread (threads: [{tid, bytes}])."""
    p, truth = start_alloc_target(ctx, python, "alloc_nogil.py", 60)
    duration = 4.0
    r, done = alloc_record(ctx, p, truth, "malloc", duration=duration, stop=False)
    doc = parse_report(r, truth["pid"], truth, events="malloc")
    rate = ALLOC_RATE_DEFAULT
    problems = check_alloc_shape(doc, "malloc", rate)
    if max(d["ended"] for d in done.values()) > r.t_end - 0.15:
        raise Fail("harness: the work (%.2fs from go) did not end within the %.0fs recording (ended %.2fs after go)"
                   % (max(d["ended"] for d in done.values()) - r.t_go, duration, r.t_end - r.t_go))
    threads = dict((t["tid"], t["bytes"]) for t in doc["threads"])
    notes = []
    fm, fg = truth["functions"]["mallocer"], truth["functions"]["grower"]
    sm = ht_sigma([[done["mallocer"]["size"], done["mallocer"]["count"]]], rate)
    sg = ht_sigma([[done["grower"]["live"], 1]], rate)
    for info, d, sigma, slack, role in ((fm, done["mallocer"], sm, 2 * done["mallocer"]["size"], "mallocer"),
                                        (fg, done["grower"], sg, 0.05 * done["grower"]["live"], "grower")):
        s = find_site(doc, info)
        if s is None:
            others = [x for x in doc["sites"] if x.get("function") == info["function"]]
            problems.append("no site %s (%s:%d)%s" % (info["function"], os.path.basename(info["file"]), info["line"],
                                                      "; %s is there" % site_label(others[0]) if others else ""))
            continue
        st = s.get("stack") or []
        if len(st) < 2 or st[1].get("function") != "paced":
            problems.append("%s's stack is %s; want paced() under it" % (
                site_label(s), " <- ".join(fmt(f) for f in st[:3])))
        if not within(s["live"], d["live"], sigma, slack):
            problems.append("%s live %s, truth %s (sigma %s)"
                            % (site_label(s), mb(s["live"]), mb(d["live"]), mb(sigma)))
        tb = threads.get(info["tid"])
        if tb is None:
            problems.append("threads has no entry for the %s thread %d: %s" % (role, info["tid"], doc["threads"][:6]))
        elif not within(tb, d["live"], sigma, slack + 262144):
            problems.append("threads gives the %s thread %d %s; it keeps %s"
                            % (role, info["tid"], mb(tb), mb(d["live"])))
        ol = s["oldest_live"]
        if ol and any(o["tid"] != info["tid"] for o in ol):
            problems.append("%s's oldest_live names threads %s, want %d" % (
                site_label(s), sorted(set(o["tid"] for o in ol)), info["tid"]))
        notes.append("%s: live %s (truth %s), thread %s" % (info["function"], mb(s["live"]), mb(d["live"]), mb(tb)))
    if doc.get("ended_by") not in (None, "duration"):
        problems.append("ended_by is %r, want 'duration'" % doc.get("ended_by"))
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    problems += target_state_problems(p.pid, "the recording")
    if problems:
        raise Fail("`%s`:\n    %s\n    %s\n    threads %s"
                   % (r.cmd(), "\n    ".join(problems[:25]), alloc_context(r, doc), doc["threads"][:6]))
    return "; ".join(notes)


def case_alloc_killed(ctx, python):
    """SIGKILL to the target during a --events malloc recording: exit 0, a message, and the report of
    what was seen, with the site that keeps memory on top and its live bytes right."""
    p, truth = start_alloc_target(ctx, python, "alloc_known.py", "malloc", 60)
    args = ["record", "--pid", str(truth["pid"]), "--events", "malloc", "--duration", "60", "--json"]
    b = ctx.start_bin(args)
    if not wait_attached(ctx, b, timeout=10):
        r = ctx.finish_bin(b, timeout=5)
        raise Fail("pymemspy never attached (no BPF links): %s" % r.describe(True))
    time.sleep(0.3)
    send_line(p)
    wait_file(ctx, truth["path"] + ".done", p, "done file (the work)", timeout=40)
    with open(truth["path"] + ".done", encoding="utf-8") as f:
        done = json.load(f)
    time.sleep(0.2)
    t_kill = time.monotonic()
    killpg(p)
    p.wait()
    r = ctx.finish_bin(b, timeout=15)
    lag = time.monotonic() - t_kill
    doc = parse_report(r, truth["pid"], truth, events="malloc")
    problems = check_alloc_shape(doc, "malloc", ALLOC_RATE_DEFAULT)
    if lag > 3 * SCALE:
        problems.append("pymemspy took %.1fs to notice that the target was killed" % lag)
    if not STOP_MESSAGE.search(r.err.decode("utf-8", "replace")):
        problems.append("no message on stderr saying that the target exited")
    if doc.get("ended_by") not in (None, "target exited"):
        problems.append("ended_by is %r, want 'target exited'" % doc.get("ended_by"))
    if not problems:
        pr, notes = check_known(r, doc, truth, done, "malloc", ALLOC_RATE_DEFAULT, False)
        problems += pr
    if problems:
        raise Fail("`%s`:\n    %s\n    %s" % (r.cmd(), "\n    ".join(problems[:25]), alloc_context(r, doc)))
    return "report %.2fs after the kill; %s" % (lag, ", ".join(notes))


OVERHEAD_RATE = 5000        # alloc_steady.py: libc malloc() calls a second (and as many free())
OVERHEAD_DURATION = 4.0
OVERHEAD_STOP_BY = 3.0      # seconds: the decision comes from the first second's call rate


def start_steady_target(ctx, python, rate=OVERHEAD_RATE):
    """Start alloc_steady.py (allocating at `rate` from the start); return (proc, ready info)."""
    ready = os.path.join(ctx.dir, "ready.json")
    p = python_target(ctx, python, "alloc_steady.py", ready, os.path.join(ctx.dir, "timeline"), str(rate), "80",
                      stdin=subprocess.PIPE)
    wait_file(ctx, ready, p, "ready file")
    with open(ready, encoding="utf-8") as f:
        return p, json.load(f)


def overhead_problems(doc, r, max_pct):
    """Problems of sampling.overhead of a --events malloc report recorded with --max-overhead max_pct
    (None: without): its shape, and stopped exactly when the prediction passed the limit."""
    p = []
    ov = (doc.get("sampling") or {}).get("overhead")
    if not isinstance(ov, dict):
        return ["sampling.overhead is %r, want {trap_ns, return_trap_ns, calls_per_sec, predicted_pct, max_pct, "
                "stopped_at}" % (ov,)]
    for k in ("trap_ns", "return_trap_ns", "predicted_pct", "calls_per_sec"):
        if not positive(ov.get(k)):
            p.append("sampling.overhead.%s is %r, want a positive number" % (k, ov.get(k)))
    if max_pct is None:
        if ov.get("max_pct", "absent") is not None:
            p.append("sampling.overhead.max_pct is %r without --max-overhead, want null" % (ov.get("max_pct", "absent"),))
    elif not is_num(ov.get("max_pct")) or abs(ov["max_pct"] - max_pct) > 1e-6 * max(1.0, max_pct):
        p.append("sampling.overhead.max_pct is %r, want %g" % (ov.get("max_pct"), max_pct))
    st = ov.get("stopped_at", "absent")
    if st is not None and not (is_num(st) and 0 <= st <= (doc.get("duration") or 0) + 0.5):
        p.append("sampling.overhead.stopped_at is %r, want null or seconds within the recording" % (st,))
    if not p and max_pct is None and st is not None:
        p.append("stopped_at is %r without --max-overhead" % st)
    if not p and max_pct is not None and (st is not None) != (ov["predicted_pct"] > max_pct):
        p.append("predicted %.3g%% against --max-overhead %g, but stopped_at is %r"
                 % (ov["predicted_pct"], max_pct, st))
    if "predicted" not in r.err.decode("utf-8", "replace"):
        p.append("no line on stderr giving the predicted slowdown")
    return p


def overhead_record(ctx, p, info, max_pct=None, duration=OVERHEAD_DURATION):
    """record --events malloc [--max-overhead max_pct] on alloc_steady.py: (run, doc, problems)."""
    args = ["record", "--pid", str(info["pid"]), "--events", "malloc", "--duration", "%g" % duration, "--json"]
    if max_pct is not None:
        args += ["--max-overhead", "%g" % max_pct]
    r = ctx.run_bin(args, timeout=duration + 30)
    doc = parse_report(r, info["pid"], info, events="malloc")
    problems = check_alloc_shape(doc, "malloc", ALLOC_RATE_DEFAULT) + overhead_problems(doc, r, max_pct)
    if not (is_num(doc.get("duration")) and doc["duration"] >= duration - 0.5):
        problems.append("the recording lasted %r s of its %g" % (doc.get("duration"), duration))
    if doc.get("ended_by") not in (None, "duration"):
        problems.append("ended_by is %r, want 'duration'" % doc.get("ended_by"))
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    problems += target_state_problems(p.pid, "the recording")
    return r, doc, ["`%s`: %s" % (r.cmd(), x) for x in problems]


def case_alloc_max_overhead(ctx, python):
    """record --events malloc --max-overhead PCT on alloc_steady.py (5000 malloc()s a second from
    before the attach): without the option sampling.overhead predicts (max_pct and stopped_at null);
    with 0.01 the probes stop within 3 s (stopped_at) and counters.alloc_calls stop growing (against
    the run without), the recording going on to its end (exit 0); with 100 they stop only where the
    prediction is above 100; --max-overhead with growth or survivors is a usage error (exit 2)."""
    p, info = start_steady_target(ctx, python)
    problems = []
    for events in ("growth", "survivors"):
        u = ctx.run_bin(["record", "--pid", str(info["pid"]), "--events", events, "--duration", "2",
                         "--max-overhead", "5"])
        if u.rc != EXIT_USAGE or u.out.strip() or not u.err.strip():
            problems.append("--events %s --max-overhead 5: want exit 2, a message and no report: %s"
                            % (events, u.describe(True)))
    rb, base, pr = overhead_record(ctx, p, info)
    problems += pr
    rl, low, pr = overhead_record(ctx, p, info, 0.01)
    problems += pr
    rh, high, pr = overhead_record(ctx, p, info, 100)
    problems += pr
    ovb = base["sampling"].get("overhead") or {}
    ovl = low["sampling"].get("overhead") or {}
    ovh = high["sampling"].get("overhead") or {}
    st = ovl.get("stopped_at")
    cb, cl = base["counters"].get("alloc_calls"), low["counters"].get("alloc_calls")
    if not problems:
        if st is None or st >= OVERHEAD_STOP_BY:
            problems.append("--max-overhead 0.01: stopped_at %r, want < %gs (predicted %r%%)"
                            % (st, OVERHEAD_STOP_BY, ovl.get("predicted_pct")))
        # once detached, the probes count nothing more: at most what ran until stopped_at (+1 s)
        elif not (is_int(cb) and is_int(cl) and 0 < cl <= cb * min(1.0, (st + 1.0) / base["duration"])):
            problems.append("--max-overhead 0.01 stopped at %.2fs but counted %r alloc_calls, against %r in "
                            "%.1fs without: they did not stop growing" % (st, cl, cb, base["duration"]))
    if p.poll() is None:
        send_line(p, b"stop\n")
    rc, out, err = wait_target_exit(ctx, p, 20)
    if rc != 0:
        problems.append("the target failed after the recordings: rc %s %s %s" % (rc, short(out), short(err)))
    if problems:
        raise Fail("\n    ".join(problems[:25]) + "\n    overhead: %s | %s | %s\n    stderr (0.01): %s" % (
            json.dumps(ovb, sort_keys=True), json.dumps(ovl, sort_keys=True), json.dumps(ovh, sort_keys=True),
            short(rl.err, 600)))
    return "predicted %.2f%% (trap %s ns, return %s ns, %.0f calls/s); 0.01%%: stopped at %.2fs, %d alloc_calls " \
           "vs %d; 100%%: stopped_at %r" % (ovb["predicted_pct"], ovb["trap_ns"], ovb["return_trap_ns"],
                                           ovb["calls_per_sec"], st, cl, cb, ovh.get("stopped_at"))


# --- the runner ---------------------------------------------------------------------------------
class Case:
    def __init__(self, name, fn, args=(), timeout=60.0, needs=None, cost=1.0, host=()):
        self.name, self.fn, self.args, self.timeout, self.needs = name, fn, args, timeout, needs
        self.cost = cost  # rough seconds, to start the longest cases first
        self.host = host  # HOST_FEATURES the case needs: SKIP where doctor says the host lacks one


def interp(iid):
    return dict(INTERPRETERS)[iid]


def record_cases():
    """`record --events growth`: the large-object leak on every interpreter, the rest on a few."""
    cases = []
    for iid, path in INTERPRETERS:
        cases.append(Case("record/large/" + iid, case_record_leak, (path, "leak_large.py"), needs=path, cost=9))
    for iid in ("3.9.18", "3.12.1", "deb-3.11d"):
        cases.append(Case("record/read/" + iid, case_record_leak, (interp(iid), "leak_read.py"),
                          needs=interp(iid), cost=9))
    for iid in ("3.8.18", "3.13.0", "deb-3.11"):
        cases.append(Case("record/native-ctypes/" + iid, case_record_leak,
                          (interp(iid), "leak_native.py", "ctypes"), needs=interp(iid), cost=9))
    for iid in ("3.10.13", "3.11.7"):
        cases.append(Case("record/native-array/" + iid, case_record_leak,
                          (interp(iid), "leak_native.py", "array"), needs=interp(iid), cost=9))
    for iid in ("3.12.1", "deb-3.11"):
        cases.append(Case("record/no-python-thread/" + iid, case_record_leak,
                          (interp(iid), "leak_nothread.py"), needs=interp(iid), cost=9))
    for iid in ("3.8.18", "3.12.1", "deb-3.11"):  # leaks in a second thread while the main one churns
        cases.append(Case("record/leak-in-thread/" + iid, case_record_leak, (interp(iid), "leak_large.py", "thread"),
                          needs=interp(iid), cost=9))
    for iid in ("3.11.7", "deb-3.11d"):  # 100 stack walks/s for ~800 faults/s: the rest is carried
        cases.append(Case("record/budget-depth/" + iid, case_record_leak,
                          (interp(iid), "leak_large.py", None, 4.0, ["--budget", "100", "--max-depth", "2"], 2),
                          needs=interp(iid), cost=8))
    wp = ("watchpoints",)  # --events survivors: SKIP where watchpoints do not trap
    for iid, path in INTERPRETERS:  # --events survivors: a small-object leak under small-object churn
        cases.append(Case("record/survivors/" + iid, case_record_survivors, (path,), needs=path, cost=9, host=wp))
    for iid in ("3.8.18", "3.12.1", "deb-3.11"):  # leaks in a thread while two others churn
        cases.append(Case("record/survivors/threads/" + iid, case_record_survivors, (interp(iid), "thread"),
                          needs=interp(iid), cost=9, host=wp))
    cases.append(Case("record/survivors/no-pymalloc/3.12.1", case_record_survivors_no_pymalloc,
                      (interp("3.12.1"),), needs=interp("3.12.1"), cost=4, host=wp))
    # where watchpoints do not trap (the inverse: SKIP where they do)
    cases.append(Case("record/survivors/refused/3.12.1", case_record_survivors_refused,
                      (interp("3.12.1"),), needs=interp("3.12.1"), cost=4))
    for iid in ("3.10.13", "deb-3.11d"):
        cases.append(Case("record/text/" + iid, case_record_text, (interp(iid),), needs=interp(iid), cost=6))
    for iid in ("3.13.0",):
        cases.append(Case("record/signals/" + iid, case_record_signals, (interp(iid),), timeout=90,
                          needs=interp(iid), cost=15))
    for iid in ("3.9.18", "3.12.1"):
        cases.append(Case("record/target-exits/" + iid, case_record_target_exits, (interp(iid),),
                          timeout=90, needs=interp(iid), cost=10))
    for iid in ("3.11.7", "deb-3.11"):
        cases.append(Case("record/unchanged-output/" + iid, case_record_unchanged_output, (interp(iid),),
                          timeout=90, needs=interp(iid), cost=10))
    for iid in ("3.12.1",):
        cases.append(Case("record/attach-detach-20/" + iid, case_record_attach_detach, (interp(iid),),
                          timeout=150, needs=interp(iid), cost=30))
    for iid, path in INTERPRETERS:  # --events malloc|pymalloc (alloc_known.py, alloc_nogil.py)
        cases.append(Case("record/malloc/known/" + iid, case_alloc_known, (path, iid, "malloc"), needs=path, cost=6))
        # glibc's realloc(NULL) and reallocarray jump to malloc: one allocation, several entries
        if iid in ("3.12.1", "deb-3.11"):
            cases.append(Case("record/malloc/tailcalls/" + iid, case_alloc_known,
                              (path, iid, "malloc", None, "tailcalls"), needs=path, cost=6))
        if iid == "3.12.1":
            for lib, name in (("libjemalloc.so.2", "jemalloc"), ("libtcmalloc_minimal.so.4", "tcmalloc"),
                              ("libmimalloc.so.2", "mimalloc")):
                full = "/usr/lib/x86_64-linux-gnu/" + lib
                cases.append(Case("record/malloc/%s/%s" % (name, iid), case_alloc_known,
                                  (path, iid, "malloc", None, (full, name)), needs=path, cost=6))
        cases.append(Case("record/pymalloc/known/" + iid, case_alloc_known, (path, iid, "pymalloc", 4096),
                          needs=path, cost=7))
        if iid == "3.12.1":  # the attach modes of older kernels: uprobe_multi (6.6+), perf uprobes
            for events, attach, rate in (("malloc", "multi", None), ("malloc", "perf", None),
                                         ("pymalloc", "perf", 4096)):
                cases.append(Case("record/%s/attach-%s/%s" % (events, attach, iid), case_alloc_known,
                                  (path, iid, events, rate, None, attach), needs=path, cost=7))
            # without sessions, nesting is told by a depth and the stack pointer, not return addresses
            cases.append(Case("record/malloc/tailcalls-perf/" + iid, case_alloc_known,
                              (path, iid, "malloc", None, "tailcalls", "perf"), needs=path, cost=6))
        cases.append(Case("record/malloc/nogil/" + iid, case_alloc_nogil, (path,), needs=path, cost=6))
    for iid in ("3.12.1",):
        cases.append(Case("record/malloc/killed/" + iid, case_alloc_killed, (interp(iid),), needs=interp(iid), cost=6))
    for iid in ("3.12.1",):  # --max-overhead: the trap cost times the call rate stops the probes
        cases.append(Case("record/malloc/max-overhead/" + iid, case_alloc_max_overhead, (interp(iid),), timeout=90,
                          needs=interp(iid), cost=20))
    for iid, path, sv in UNSUPPORTED:
        cases.append(Case("record/unsupported/" + iid, case_record_errors, ("unsupported", (path, sv)), needs=path))
    cases += [
        Case("record/no-such-pid", case_record_errors, ("no-such-pid",)),
        Case("record/not-python", case_record_errors, ("not-python",)),
        Case("record/no-privilege", case_record_errors, ("no-privilege",)),
        Case("record/usage", case_record_usage),
    ]
    return cases + file_cases()


def file_cases():
    """Record files: record -o FILE, report FILE, report --diff."""
    cases = []
    for iid in ("3.12.1", "deb-3.11"):
        cases.append(Case("record/file/roundtrip/" + iid, case_file_roundtrip, (interp(iid),), needs=interp(iid),
                          cost=9))
    for iid in ("3.13.0",):
        cases.append(Case("record/file/sigkill/" + iid, case_file_sigkill, (interp(iid),), needs=interp(iid),
                          cost=9))
    for iid in ("3.10.13",):
        cases.append(Case("record/file/disk-full/" + iid, case_file_disk_full, (interp(iid),), needs=interp(iid),
                          cost=9))
    cases.append(Case("record/file/refuse", case_file_refuse, cost=6))
    for iid in ("3.12.1",):
        cases.append(Case("report/bad-files/" + iid, case_report_bad_files, (interp(iid),), needs=interp(iid),
                          cost=10))
    for iid in ("3.11.7",):
        cases.append(Case("report/diff/" + iid, case_report_diff, (interp(iid),), needs=interp(iid), cost=9))
    return cases


def all_cases():
    cases = []
    if OPTS.targets_only:
        for iid, path in INTERPRETERS:
            for script in ("stacks.py", "spinner.py"):
                cases.append(Case("target/%s/%s" % (script[:-3], iid), case_target_only, (path, script),
                                  needs=path))
            for script, mode in (("leak_large.py", None), ("leak_large.py", "thread"), ("leak_read.py", None),
                                 ("leak_native.py", "ctypes"),
                                 ("leak_native.py", "array"), ("leak_nothread.py", None), ("churn.py", None),
                                 ("leak_paced.py", None)):
                name = script[:-3] + ("-" + mode if mode else "")
                cases.append(Case("target/%s/%s" % (name, iid), case_growth_target_only, (path, script, mode),
                                  needs=path, cost=4))
    else:
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
            Case("doctor/json", case_doctor_json, cost=3),
        ]
        cases += record_cases()
    cases.sort(key=lambda c: -c.cost)  # stable: the longest first, otherwise in the order above
    if OPTS.subset:
        cases = [c for c in cases if c.name in SUBSET]
    if OPTS.only:
        pats = OPTS.only
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in pats)]
    return cases


def run_case(case, ctx):
    try:
        lacking = host_missing(case.host) if case.host else None  # doctor runs before the deadline starts
    except Exception as e:
        lacking = None
        ctx.notes.append("host feature probe failed: %s" % e)
    ctx.start()
    if case.needs and not os.access(case.needs, os.X_OK):
        ctx.cleanup()
        return "SKIP", "%s not installed" % case.needs
    if lacking:
        ctx.cleanup()
        return "SKIP", lacking
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
