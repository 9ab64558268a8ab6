"""`pymemspy record`: growth charged to the function that leaks, and how recording starts and ends.

record (--events growth): the leak_*.py targets (on pmsgrowth.py) leak from one known function (64 KiB
bytes, ctypes buffers, a growing array.array, os.read() buffers filled by the kernel, or strdup() in
native threads) while another function churns small objects; each writes its truth (the leaking
function, its allocating line and stack) and a timeline of its own RSS. `record --duration 5 --json`
must name the leaking function as the top site with the same line and stack, and its bytes must be
within 25% of the RSS the target gained over the recording. churn.py (no leak, deterministic output)
checks that the target's output is the same with and without a recording, and that 20 attach/detach
cycles in a row leave it running normally. Also: SIGINT/SIGTERM stop with a report, the target
exiting or killed mid-record ends it with a report (exit 0) and a message (the refusals, exit 2 to 6,
are in cases_errors.py).

record --events survivors: leak_small.py leaks small objects under small-object churn; the leaking
function must get at least 90% of the growth. These cases need watchpoints that trap (SKIP where
doctor says they do not); PYTHONMALLOC=malloc is refused with exit 5. record/survivors/refused, on
every host: where no watchpoint can be had (they do not trap, or hold_debugregs.py holds every debug
register) survivors is refused at once with exit 8 naming watchpoints, and doctor --json says so.
"""
import json
import os
import re
import signal
import subprocess
import time

import harness
from harness import (
    Case, EXIT_HOST, EXIT_UNSUPPORTED, Fail, INTERPRETERS, Skip, TARGETS, compare_frames, fail_with, fmt,
    host_feature, interp, is_int, is_num, key, killpg, mb, parse_json, python_target, short, target_state_problems,
    wait_file)
from cases_doctor import doctor_problems


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
        p.wait(timeout=timeout * harness.SCALE)
    except subprocess.TimeoutExpired:
        raise Fail("target did not finish within %.0fs\n    %s" % (timeout * harness.SCALE, ctx.proc_output(p)))
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
    end = time.time() + timeout * harness.SCALE
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


HOLD_TRIES_FOR = 45.0  # s: debug registers taken elsewhere (a debugger, another run's watchpoints) may free


def hold_debug_registers(ctx, python):
    """Start hold_debugregs.py; return (proc, N) once it holds all N hardware debug registers of the
    host. Tries again while some are taken elsewhere; Fail if they stay taken."""
    end = time.time() + HOLD_TRIES_FOR * harness.SCALE
    while True:
        p = python_target(ctx, python, "hold_debugregs.py", "60", name="hold")
        while p.poll() is None:
            with open(p.out_path, encoding="utf-8", errors="replace") as f:
                m = re.search(r"^held (\d+)$", f.read(), re.M)
            if m:
                return p, int(m.group(1))
            ctx.check_time("waiting for hold_debugregs.py to take the debug registers")
            time.sleep(0.02)
        if time.time() > end:
            raise Fail("hold_debugregs.py could not take every debug register for %.0fs (rc %s): %s"
                       % (HOLD_TRIES_FOR * harness.SCALE, p.returncode, ctx.proc_output(p)))
        time.sleep(0.5)


def case_record_survivors_refused(ctx, python):
    """Where pymemspy can have no watchpoint that traps, record --events survivors on a real target is
    refused at once, exit 8 naming watchpoints, the target left running, untraced; and doctor --json
    at that moment says selftest:watchpoint is not ok (its document consistent: survivors blocked by
    the host, exit 8). Where watchpoints trap (doctor's selftest:watchpoint passed), hold_debugregs.py
    takes every debug register of the host first (root), as a debugger's breakpoints would, and gives
    them back at the end; where they do not, the host is left as it is."""
    ok, evidence = host_feature("watchpoints")
    if ok is None:
        raise Skip("unknown whether watchpoints trap on this host (%s)" % evidence)
    if ok and os.geteuid() != 0:
        raise Skip("watchpoints trap here; taking every debug register needs root (CPU-wide perf events)")
    p, truth = start_growth_target(ctx, python, "leak_small.py", "60")
    hold, held = None, 0
    try:
        if ok:
            hold, held = hold_debug_registers(ctx, python)
        r = ctx.run_bin(["record", "--pid", str(truth["pid"]), "--duration", "10", "--events", "survivors",
                         "--json"], timeout=15)
        d = ctx.run_bin(["doctor", "--json"], timeout=60)
    finally:
        if hold is not None:
            killpg(hold)
            hold.wait()
    err = r.err.decode("utf-8", "replace")
    how = "watchpoints trap here, so hold_debugregs.py held all %d debug registers" % held if ok else \
        "no watchpoint to be had here already, nothing held (%s)" % evidence
    problems = []
    if r.rc != EXIT_HOST:
        problems.append("exit %s, want %d" % (r.rc, EXIT_HOST))
    if "watchpoint" not in err.lower():
        problems.append("stderr does not name watchpoints")
    if r.elapsed > 5 * harness.SCALE:
        problems.append("refused only after %.1fs" % r.elapsed)
    doc = parse_json(d)
    wp = None
    if not isinstance(doc, dict):
        problems.append("doctor --json printed no object")
    else:
        problems += ["doctor --json: " + x for x in doctor_problems(doc, d.rc)]
        wp = dict((c.get("name"), c) for c in doc.get("checks") or [] if isinstance(c, dict)).get(
            "selftest:watchpoint")
        if wp is None or wp.get("ok") is not False:
            problems.append("doctor --json's selftest:watchpoint is %s, want ok false" % json.dumps(wp))
    if p.poll() is not None:
        problems.append("the target died (rc %s): %s" % (p.returncode, ctx.proc_output(p)))
    problems += target_state_problems(p.pid, "the refusal")
    if problems:
        raise Fail("%s (%s): %s\n    %s" % ("; ".join(problems), how, r.describe(True), d.describe()))
    return "%s: exit 8 in %.1fs (%s); doctor --json: selftest:watchpoint not ok (%s)" % (
        how, r.elapsed, short(r.err, 200), wp.get("detail"))


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
    if stop_delay > 3.0 * harness.SCALE:
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
    if lag > 3 * harness.SCALE:
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
    if lag > 3 * harness.SCALE:
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


def cases():
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
        cases.append(Case("record/survivors/" + iid, case_record_survivors, (path,), needs=path, cost=9, host=wp,
                          debugregs="shared"))
    for iid in ("3.8.18", "3.12.1", "deb-3.11"):  # leaks in a thread while two others churn
        cases.append(Case("record/survivors/threads/" + iid, case_record_survivors, (interp(iid), "thread"),
                          needs=interp(iid), cost=9, host=wp, debugregs="shared"))
    cases.append(Case("record/survivors/no-pymalloc/3.12.1", case_record_survivors_no_pymalloc,
                      (interp("3.12.1"),), needs=interp("3.12.1"), cost=4, host=wp, debugregs="shared"))
    # every host: where watchpoints trap, it takes every debug register first (the others wait)
    cases.append(Case("record/survivors/refused/3.12.1", case_record_survivors_refused,
                      (interp("3.12.1"),), timeout=120, needs=interp("3.12.1"), cost=4, debugregs="alone"))
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
    return cases


def target_cases():
    cases = []
    for iid, path in INTERPRETERS:
        for script, mode in (("leak_large.py", None), ("leak_large.py", "thread"), ("leak_read.py", None),
                             ("leak_native.py", "ctypes"),
                             ("leak_native.py", "array"), ("leak_nothread.py", None), ("churn.py", None),
                             ("leak_paced.py", None)):
            name = script[:-3] + ("-" + mode if mode else "")
            cases.append(Case("target/%s/%s" % (name, iid), case_growth_target_only, (path, script, mode),
                              needs=path, cost=4))
    return cases
