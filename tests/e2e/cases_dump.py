"""`pymemspy dump` against targets that know their own stacks.

Each target under tests/targets/ (stacks.py, spinner.py, on pmstruth.py) parks its threads at known
places and writes a "truth" file with what the interpreter itself reports (sys._current_frames() +
traceback.extract_stack(), qualnames on 3.11+, native thread ids); the cases compare `pymemspy dump --json`
with it thread by thread (matched by native tid) and frame by frame. exits-mid-dump/*: shortlived.py
exits (or is killed) while being dumped: exit 0 or 3, never a crash. --targets-only: the targets' own
truth is complete and sane.
"""
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import harness
from harness import (
    Case, EXIT_NOPROC, EXIT_OK, Fail, INTERPRETERS, TARGETS, compare_frames, fail_with, fmt, killpg, parse_json,
    proc_status, python_target, tasks_of, wait_file)


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
    end = time.time() + 5 * harness.SCALE
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
    end = time.time() + 10 * harness.SCALE
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
    end = time.time() + 2 * harness.SCALE
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
    end = time.time() + 5 * harness.SCALE
    while not os.path.exists(pong):
        if time.time() > end or p.poll() is not None:
            problems.append("after %s the target did not answer SIGUSR1 within %.0fs (rc %s); threads: %s"
                            % (what, 5 * harness.SCALE, p.poll(), "; ".join(thread_states(p.pid))))
            return problems
        time.sleep(0.02)
    wait_parked(ctx, p, truth, "after answering SIGUSR1")  # back in its sleep for later dumps
    return problems


# --- comparing a dump with the truth ----------------------------------------------------------
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


def cases():
    rounds = 6 if harness.OPTS.subset else 10
    cases = []
    for iid, path in INTERPRETERS:
        cases.append(Case("dump/spinner/" + iid, case_spinner, (path,), needs=path))
        cases.append(Case("exits-mid-dump/" + iid, case_exits, (path, rounds), timeout=90, needs=path))
        cases.append(Case("dump/stacks/" + iid, case_stacks, (path,), needs=path))
    return cases


def target_cases():
    cases = []
    for iid, path in INTERPRETERS:
        for script in ("stacks.py", "spinner.py"):
            cases.append(Case("target/%s/%s" % (script[:-3], iid), case_target_only, (path, script),
                              needs=path))
    return cases
