"""The e2e harness: interpreters, running the binary and targets under a deadline, host features,
helpers every command's cases share, and the runner (parallel cases, PASS/FAIL/SKIP lines, the
summary). run.py parses the command line and lists the cases; cases_*.py hold them, one module per
command.

OPTS, BIN and SCALE are set by configure() and run() before any case runs: the cases modules read
them as harness.SCALE (importing the names would copy their values at import time).
"""
import atexit
import concurrent.futures
import json
import os
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
DEBUG_REGISTERS_WAIT = 300.0  # at most this long (scaled) for the debug registers, before the deadline starts


class SharedLock:
    """Held by many at once (shared) or by one alone; one waiting to hold it alone goes first."""

    def __init__(self):
        self.cond = threading.Condition()
        self.shared = 0
        self.alone = False
        self.waiting = 0

    def acquire(self, alone, timeout):
        end = time.time() + timeout
        with self.cond:
            if alone:
                self.waiting += 1
            try:
                while self.alone or (self.shared if alone else self.waiting):
                    if not self.cond.wait(end - time.time()) and time.time() >= end:
                        return False
                if alone:
                    self.alone = True
                else:
                    self.shared += 1
                return True
            finally:
                if alone:
                    self.waiting -= 1
                    self.cond.notify_all()

    def release(self, alone):
        with self.cond:
            if alone:
                self.alone = False
            else:
                self.shared -= 1
            self.cond.notify_all()


# The hardware debug registers are the host's, not a case's: record/survivors/refused takes all of
# them (tests/targets/hold_debugregs.py) for a few seconds where watchpoints trap. The cases that open
# watchpoints (Case.debugregs "shared") do not run meanwhile; that one (Case.debugregs "alone") waits
# until none of them runs.
DEBUG_REGISTERS = SharedLock()


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


# --- comparing stacks and documents -----------------------------------------------------------
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


def fail_with(problems, r, limit=25):
    lines = problems[:limit]
    if len(problems) > limit:
        lines.append("... %d more" % (len(problems) - limit))
    raise Fail("`%s` disagrees with the interpreter:\n    %s\n    stderr: %s"
               % (r.cmd(), "\n    ".join(lines), short(r.err) or "(empty)"))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive(v):
    return is_num(v) and v > 0


def mb(n):
    return "%.1f MB" % (n / 1e6) if n is not None else "?"


# --- refusals and interpreters -----------------------------------------------------------------
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


# --- the runner ---------------------------------------------------------------------------------
class Case:
    def __init__(self, name, fn, args=(), timeout=60.0, needs=None, cost=1.0, host=(), debugregs=None):
        self.name, self.fn, self.args, self.timeout, self.needs = name, fn, args, timeout, needs
        self.cost = cost  # rough seconds, to start the longest cases first
        self.host = host  # HOST_FEATURES the case needs: SKIP where doctor says the host lacks one
        # "shared": it opens watchpoints; "alone": it takes every debug register (DEBUG_REGISTERS)
        self.debugregs = debugregs


def interp(iid):
    return dict(INTERPRETERS)[iid]


def run_case(case, ctx):
    try:
        lacking = host_missing(case.host) if case.host else None  # doctor runs before the deadline starts
    except Exception as e:
        lacking = None
        ctx.notes.append("host feature probe failed: %s" % e)
    installed = not case.needs or os.access(case.needs, os.X_OK)
    alone = case.debugregs == "alone"
    locked = False
    if case.debugregs and installed and not lacking:  # waits before the deadline starts
        locked = DEBUG_REGISTERS.acquire(alone, DEBUG_REGISTERS_WAIT * SCALE)
        if not locked:
            ctx.start()
            ctx.cleanup()
            return "FAIL", "waited %.0fs for the debug registers (the cases using them did not end)" % (
                DEBUG_REGISTERS_WAIT * SCALE)
    ctx.start()
    if not installed:
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
        if locked:
            DEBUG_REGISTERS.release(alone)


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


def configure(opts):
    """The parsed command line (run.py): before the cases are listed."""
    global OPTS, SCALE
    OPTS = opts
    SCALE = float(os.environ.get("PMS_E2E_TIMEOUT_SCALE", "3" if OPTS.subset else "1"))


def run(cases):
    """Run `cases` (OPTS.jobs at a time), print a line for each and the summary; the exit status."""
    global BIN
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
