#!/usr/bin/env python3
"""End-to-end tests of `pymemspy top`, driven in tmux against tests/targets/top_leak.py.

    python3 tests/e2e/top.py [-v]

The target keeps a 64 KiB bytearray every 20 ms in leak(), churns small objects in churn() and
fills a bounded cache in cache_put() for its first 8 s. The live view runs in a private tmux
server (100x30, later resized to 80x24) under `sh`, which prints the exit status and the terminal
modes (stty) once top ends, so that the captures can check that the terminal was given back.

Cases: the leaking function reaches the first row; each sort key orders the table by its column
(and the same key again reverses it); grouping by function and by file; `?` shows the keys; the
stack of the selected row; pause freezes the view; a resize to 80x24; `q`, Ctrl-C and SIGTERM
restore the terminal and exit 0; the target exiting ends top with a message; a non-terminal
stdout gets plain-text snapshots naming the leaking function; usage errors exit 2.

The binary comes from $PMS_BIN (default ./pymemspy); PMS_E2E_TIMEOUT_SCALE multiplies every
deadline. Output: one line per case, then exactly `N passed, M failed`; exit status 1 if any
failed. Everything started here is killed in `finally`. Plain Python 3.8+ standard library only.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = os.path.join(REPO, "tests", "targets", "top_leak.py")
PYTHONS = ["/root/.pyenv/versions/3.12.1/bin/python3.12", "/usr/bin/python3.11"]
BIN = os.path.abspath(os.environ.get("PMS_BIN", "./pymemspy"))
SCALE = float(os.environ.get("PMS_E2E_TIMEOUT_SCALE", "1"))
SOCKET = "pms-top-e2e-%d" % os.getpid()
VERBOSE = "-v" in sys.argv[1:]

UNIT = r"(?:B|KiB|MiB|GiB|TiB)"
ROW = re.compile(r"^([> ])\s*(-?[\d.]+ " + UNIT + r")\s+([+-]?[\d.]+ " + UNIT + r")\s+(\S+)\s+(\d+)"
                 r"\s+(\S.*?)\s*$")
STATUS = re.compile(r"group: (\w+)\s+sort: (\w+) \((ascending|descending)\)")
FACTORS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}


class Fail(Exception):
    pass


def bytes_of(text):
    num, unit = text.split()
    return float(num) * FACTORS[unit]


def deadline(seconds):
    return time.monotonic() + seconds * SCALE


def tmux(*args, timeout=20):
    r = subprocess.run(["tmux", "-L", SOCKET] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout * SCALE)
    if r.returncode != 0:
        raise Fail("tmux %s: %s" % (" ".join(args[:2]), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode("utf-8", "replace")


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Table:
    """One capture of the live view, parsed."""

    def __init__(self, text):
        self.text = text
        self.lines = text.split("\n")
        self.rows = []
        self.status = STATUS.search(text)
        self.heading = None
        for i, line in enumerate(self.lines):
            if "RESIDENT" in line and "GROWTH/s" in line:
                self.heading = line
                for row in self.lines[i + 1:]:
                    m = ROW.match(row)
                    if not m:
                        break
                    self.rows.append({
                        "selected": m.group(1) == ">", "resident": bytes_of(m.group(2)),
                        "rate": bytes_of(m.group(3).lstrip("+")), "leak": m.group(4),
                        "samples": int(m.group(5)), "label": m.group(6),
                        "function": m.group(6).split(" (")[0]})
                break

    def sort(self):
        return (self.status.group(2), self.status.group(3)) if self.status else None

    def first(self):
        return self.rows[0]["function"] if self.rows else None

    def names(self):
        return [r["function"] for r in self.rows]

    def elapsed(self):
        m = re.search(r"(\d+) s\s*$", self.lines[0]) if self.lines else None
        return int(m.group(1)) if m else None


class Session:
    """`pymemspy top` in a tmux window, under sh (which reports how it ended)."""

    def __init__(self, name, pid, extra=()):
        self.name = name
        argv = [BIN, "top", "--pid", str(pid)] + list(extra)
        # `trap : INT` keeps sh alive through Ctrl-C (top handles it); stty shows the modes top
        # left the terminal in (icanon, echo, isig all on when it was restored)
        script = ("trap : INT; %s; echo \"TOP-EXIT=$?\"; stty -a | tr ' ;' '\\n\\n' | "
                  "grep -E '^-?(icanon|echo|isig)$' | tr '\\n' ' '; echo; echo TOP-DONE; "
                  "sleep 600" % " ".join(shlex.quote(a) for a in argv))
        tmux("new-session", "-d", "-s", name, "-x", "100", "-y", "30", "sh", "-c", script)
        self.shell = int(tmux("display", "-p", "-t", name, "#{pane_pid}").strip())
        self.top_pid = None

    def capture(self):
        return tmux("capture-pane", "-p", "-t", self.name)

    def flag(self, fmt):
        return tmux("display", "-p", "-t", self.name, fmt).strip()

    def keys(self, *keys):
        tmux("send-keys", "-t", self.name, *keys)

    def find_top(self):
        if self.top_pid is None:
            kids = children(self.shell)
            if kids:
                self.top_pid = kids[0]
        return self.top_pid

    def wait(self, what, pred, seconds=5.0):
        """Polls captures until pred(Table) holds; Fail with the last capture otherwise."""
        end = deadline(seconds)
        while True:
            self.find_top()
            try:
                text = self.capture()
            except subprocess.TimeoutExpired:  # a tmux server starved on a busy host
                if time.monotonic() > end:
                    raise Fail("%s: tmux does not answer" % what)
                continue
            table = Table(text)
            if pred(table):
                return table
            if "TOP-DONE" in text and not pred(table):
                raise Fail("%s: top ended:\n%s" % (what, text.rstrip()))
            if time.monotonic() > end:
                raise Fail("%s: not within %.0f s; screen:\n%s" % (what, seconds * SCALE,
                                                                   text.rstrip()))
            time.sleep(0.2)

    def wait_done(self, what, seconds=5.0):
        return self.wait(what, lambda t: "TOP-DONE" in t.text, seconds)

    def check_restored(self, text):
        """top ended with 0 and left the terminal as it found it."""
        m = re.search(r"TOP-EXIT=(\d+)", text)
        if not m or m.group(1) != "0":
            raise Fail("exit status %s, want 0:\n%s" % (m and m.group(1), text.rstrip()))
        modes = text.split("TOP-EXIT=")[1].split("\n")[1].split()
        if sorted(modes) != ["echo", "icanon", "isig"]:
            raise Fail("terminal modes after top: %s (want icanon echo isig)" % modes)
        if "j/k select" in text or "? for keys" in text:
            raise Fail("the view is still on the screen:\n%s" % text.rstrip())
        if self.flag("#{alternate_on}") != "0":
            raise Fail("still on the alternate screen")
        if self.flag("#{cursor_flag}") != "1":
            raise Fail("the cursor is still hidden")
        if self.flag("#{keypad_cursor_flag}") != "0":
            raise Fail("the keypad is still in application mode")
        if self.top_pid and alive(self.top_pid):
            raise Fail("pymemspy (pid %d) still runs" % self.top_pid)

    def kill(self):
        pid = self.find_top()
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- checks ---------------------------------------------------------------------------------------
def ordered(values, descending):
    pairs = list(zip(values, values[1:]))
    return all(a >= b for a, b in pairs) if descending else all(a <= b for a, b in pairs)


def sorted_by(key, direction, column, min_rows=2):
    """A predicate: the status line says this sort and the rows are in that order."""
    desc = direction == "descending"

    def pred(t):
        if t.sort() != (key, direction) or len(t.rows) < min_rows:
            return False
        if column == "function":
            return ordered(t.names(), desc)
        if column == "leak":  # candidates (a confidence) before the rest
            return ordered([r["leak"] != "-" for r in t.rows], desc)
        return ordered([r[column] for r in t.rows], desc)
    return pred


# --- the cases ------------------------------------------------------------------------------------
class Runner:
    def __init__(self):
        self.passed = self.failed = 0

    def case(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            detail = fn(*args) or ""
        except Fail as e:
            self.failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            return False
        except Exception as e:  # a bug in the test itself counts as a failure, not a crash
            self.failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
            return False
        self.passed += 1
        print("PASS %s: %s (%.1f s)" % (name, detail, time.monotonic() - t0), flush=True)
        return True


def start_target(python, workdir, tag, lifetime=None, procs=None):
    ready = os.path.join(workdir, "ready-" + tag)
    argv = [python, TARGET, ready] + ([str(lifetime)] if lifetime else [])
    log = open(os.path.join(workdir, "target-%s.log" % tag), "wb")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    procs.append(p)
    end = deadline(15)
    while not os.path.exists(ready):
        if p.poll() is not None or time.monotonic() > end:
            raise Fail("the target did not start (%s)" % " ".join(argv))
        time.sleep(0.05)
    return p


def main_session(r, pid):
    """The keys, one case each, in one live view; then q."""
    s = Session("main", pid)
    sessions.append(s)
    t0 = time.monotonic()

    def first_row():
        t = s.wait("leak() on the first row", lambda t: t.first() == "leak", 7)
        return "after %.1f s: %s" % (time.monotonic() - t0, t.rows[0]["label"])

    def sort_case(key, name, direction, column, check_first=lambda t: True):
        def run():
            s.keys(key)
            in_order = sorted_by(name, direction, column)
            # waits for the data too: leak() is a candidate after some 3 s of evidence
            t = s.wait("sort %s %s with the expected first row" % (name, direction),
                       lambda t: in_order(t) and check_first(t), 8)
            return "%s %s: %s" % (name, direction, ", ".join(t.names()))
        return run

    def help_case():
        s.keys("?")
        s.wait("the help", lambda t: "pymemspy top: keys" in t.text and "SAMPLES" in t.text)
        s.keys("Escape")
        s.wait("the table after the help", lambda t: bool(t.rows))
        return "shown, then closed by a key"

    def stack_case():
        s.keys("r")
        s.wait("sort resident", sorted_by("resident", "descending", "resident"))
        s.keys("Home", "Enter")
        t = s.wait("the stack of leak()",
                   lambda t: "Stack of leak" in t.text and "<module>" in t.text)
        frames = [ln.split()[1] for ln in t.lines if re.match(r"\s+#\d+\s", ln)]
        if frames[:2] != ["leak", "main"]:
            raise Fail("frames %s, want leak, main, <module>" % frames)
        s.keys("Escape")
        s.wait("the table after the stack", lambda t: bool(t.rows))
        return "frames " + " <- ".join(frames)

    def pause_case():
        s.keys("p")
        t1 = s.wait("paused", lambda t: "PAUSED" in t.text and bool(t.rows))
        time.sleep(2.5)
        t2 = Table(s.capture())
        if t2.elapsed() != t1.elapsed() or t2.rows != t1.rows:
            raise Fail("the view changed while paused:\n%s\n---\n%s" % (t1.text, t2.text))
        s.keys("p")
        t3 = s.wait("resumed", lambda t: "PAUSED" not in t.text and t.elapsed() is not None and
                    t.elapsed() > t1.elapsed() + 2)
        return "froze at %d s, resumed at %d s" % (t1.elapsed(), t3.elapsed())

    def group_case():
        s.keys("2")
        s.wait("grouped by function", lambda t: t.status and t.status.group(1) == "function" and
               "FUNCTION (FILE)" in (t.heading or "") and bool(t.rows))
        s.keys("3")
        t = s.wait("grouped by file", lambda t: t.status and t.status.group(1) == "file" and
                   bool(t.rows))
        files = [r["label"] for r in t.rows if r["label"].endswith("top_leak.py")]
        if len(files) != 1:
            raise Fail("want one row for top_leak.py:\n%s" % t.text.rstrip())
        s.keys("1")
        s.wait("grouped by line", lambda t: t.status and t.status.group(1) == "line" and
               "FUNCTION (FILE:LINE)" in (t.heading or ""))
        return "function, file (%s), line" % os.path.basename(files[0])

    def resize_case():
        tmux("resize-window", "-t", "main", "-x", "80", "-y", "24")
        t = s.wait("80x24", lambda t: len(t.text.rstrip("\n").split("\n")) == 24 and
                   t.lines[23].startswith(" q quit") and bool(t.rows))
        wide = [ln for ln in t.lines if len(ln) > 80]
        if wide or "events: growth" not in t.lines[0]:
            raise Fail("does not fit 80x24:\n%s" % t.text)
        return "header, %d rows and the key line fit" % len(t.rows)

    def quit_case():
        s.keys("q")
        t = s.wait_done("top ends on q")
        s.check_restored(t.text)
        return "exit 0, terminal restored"

    ok = r.case("top/first-row", first_row)
    cases = [
        ("top/sort-name", sort_case("n", "name", "ascending", "function",
                                    lambda t: t.first() != "leak")),
        ("top/sort-name-reversed", sort_case("n", "name", "descending", "function")),
        ("top/sort-resident", sort_case("r", "resident", "descending", "resident",
                                        lambda t: t.first() == "leak")),
        ("top/sort-resident-reversed", sort_case("r", "resident", "ascending", "resident",
                                                 lambda t: t.first() != "leak")),
        ("top/sort-growth", sort_case("g", "growth", "descending", "rate",
                                    lambda t: t.first() == "leak")),
        ("top/sort-samples", sort_case("s", "samples", "descending", "samples")),
        ("top/sort-leak", sort_case("l", "leak", "descending", "leak",
                                    lambda t: t.first() == "leak" and t.rows[0]["leak"] != "-")),
        ("top/help", help_case),
        ("top/stack", stack_case),
        ("top/pause", pause_case),
        ("top/group", group_case),
        ("top/resize-80x24", resize_case),
        ("top/quit", quit_case),
    ]
    def no_view():
        raise Fail("no live view to test")

    for name, fn in cases:
        r.case(name, fn if ok or name == "top/quit" else no_view)


def stop_case(pid, how):
    s = Session("stop-" + how, pid)
    sessions.append(s)
    s.wait("the live view", lambda t: bool(t.rows), 8)
    if how == "sigterm":
        os.kill(s.find_top(), signal.SIGTERM)
    else:
        s.keys("C-c")
    t = s.wait_done("top ends on " + how)
    s.check_restored(t.text)
    return "exit 0, terminal restored"


def target_exit_case(python, workdir):
    lifetime = 6
    p = start_target(python, workdir, "short", lifetime, procs)
    s = Session("target-exit", p.pid)
    sessions.append(s)
    s.wait("the live view", lambda t: bool(t.rows), 8)
    t = s.wait_done("top ends when the target exits", lifetime + 8)
    want = "the target (pid %d) exited" % p.pid
    if want not in t.text:
        raise Fail("no message %r:\n%s" % (want, t.text.rstrip()))
    s.check_restored(t.text)
    return "message, exit 0, terminal restored"


def plain_case(pid, workdir, events="growth"):
    out = os.path.join(workdir, "snapshots-%s.txt" % events)
    with open(out, "wb") as f:
        r = subprocess.run([BIN, "top", "--pid", str(pid), "--duration", "3", "--events", events],
                           stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=30 * SCALE)
    text = open(out, encoding="utf-8", errors="replace").read()
    if r.returncode != 0:
        raise Fail("exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
    if "\x1b" in text:
        raise Fail("escape sequences in the plain-text output")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if len(blocks) < 2 or not all(b.startswith("pymemspy top: pid %d " % pid) for b in blocks):
        raise Fail("want 2 or more blocks, each with a header line:\n%s" % text)
    last = blocks[-1].split("\n")
    if len(last) < 3 or not re.match(r"\s+1\s.*\sleak \(.*top_leak\.py:\d+\)$", last[2]):
        raise Fail("leak() is not the first site of the last snapshot:\n%s" % blocks[-1])
    # an allocator source heads its bytes LIVE (allocated, not freed) and shows ALLOC
    heading = last[1].split()
    want = ["LIVE", "ALLOC"] if events != "growth" else ["RESIDENT"]
    if not all(w in heading for w in want):
        raise Fail("column headings %s lack %s" % (heading, want))
    return "%d snapshots, leak() first" % len(blocks)


def usage_case():
    for args in (["top"], ["top", "--pid", "1", "--events", "nope"],
                 ["top", "--pid", "1", "--interval", "0"], ["top", "--pid", "1", "--sort", "x"]):
        r = subprocess.run([BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10 * SCALE)
        if r.returncode != 2:
            raise Fail("%s: exit %d, want 2" % (" ".join(args), r.returncode))
    return "exit 2 for each"


sessions = []
procs = []


def main():
    python = next((p for p in PYTHONS if os.access(p, os.X_OK)), None)
    if not python or not shutil.which("tmux") or not os.access(BIN, os.X_OK):
        print("FAIL setup: need an interpreter (%s), tmux and %s" % (" or ".join(PYTHONS), BIN))
        print("0 passed, 1 failed")
        return 1
    workdir = tempfile.mkdtemp(prefix="pms-top-e2e-")
    r = Runner()
    try:
        target = start_target(python, workdir, "main", procs=procs)
        time.sleep(0.5)
        main_session(r, target.pid)
        r.case("top/sigterm", stop_case, target.pid, "sigterm")
        r.case("top/ctrl-c", stop_case, target.pid, "ctrl-c")
        r.case("top/target-exits", target_exit_case, python, workdir)
        r.case("top/plain-snapshots", plain_case, target.pid, workdir)
        r.case("top/plain-snapshots-malloc", plain_case, target.pid, workdir, "malloc")
        r.case("top/usage", usage_case)
    except Fail as e:
        r.failed += 1
        print("FAIL setup: %s" % e, flush=True)
    finally:
        for s in sessions:
            try:
                s.kill()
            except Exception:
                pass
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
        if VERBOSE:
            print("(kept %s)" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (r.passed, r.failed))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
