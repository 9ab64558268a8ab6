"""Record files: `pymemspy record -o FILE`, `pymemspy report FILE`, `report --diff`.

record files (-o FILE, man/pymemspy-record.5): `report FILE --json` gives the document `record --json`
printed (but for truncated/recording/profiler), the text report leads with the leak, the file is 0600,
whole (its framing and CRCs read independently here) and within 1 MB a minute; a recorder killed with
SIGKILL leaves a file that reads as truncated, losing at most its last second, and the target untraced;
-o refuses an existing file without --force and any symlink; a full disk (a 64 KiB tmpfs, root only)
keeps record's own report whole and the file readable; `report` on missing, foreign, cut (every
1 KiB and odd places), zero-tailed and damaged files exits 1, 7 or 0 as documented, never crashing;
`report --diff` of a slow and a fast run of leak_paced.py puts the leak first with a positive change.
"""
import json
import os
import random
import re
import signal
import stat
import struct
import subprocess
import tempfile
import time
import zlib

import harness
from harness import (
    Case, EXIT_USAGE, Fail, Skip, expect_error, first_interpreter, fmt, interp, is_int, is_num, killpg, mb,
    parse_json, python_target, short, target_state_problems, wait_file)
from cases_record import (
    Timeline, check_report_shape, is_leak_site, parse_report, record_args, site_label, sites_summary,
    start_growth_target, text_top_row, wait_attached)


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
    if dur < ran - 1.0 - 0.5 * harness.SCALE:
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


def cases():
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
