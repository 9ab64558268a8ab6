"""`pymemspy record --events malloc|pymalloc`: targets that know every allocation they make.

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
"""
import json
import os
import signal
import subprocess
import time

import harness
from harness import (
    Case, EXIT_USAGE, Fail, INTERPRETERS, compare_frames, fmt, interp, is_int, is_num, key, killpg, mb, positive,
    python_target, short, target_state_problems, wait_file)
from cases_record import STOP_MESSAGE, parse_report, send_line, site_label, wait_attached, wait_target_exit


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
    if lag > 3 * harness.SCALE:
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


def cases():
    """`record --events malloc|pymalloc`."""
    cases = []
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
    return cases
