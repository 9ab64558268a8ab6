#!/usr/bin/env python3
"""End-to-end tests of `pymemspy census` against tests/targets/census_known.py.

    python3 tests/e2e/census.py [-v] [-k SUBSTRING]

The target builds a known population (20000 instances of its own class Invoice, lists, dicts,
bytes and strings), writes its own view of the heap (gc.get_objects() plus one level of items
of the exact containers, counted as census counts them), then appends 500 Entry objects per
second to its module-level list LEDGER. Every census runs with the BPF capabilities dropped
(`capsh --drop=cap_bpf,cap_perfmon,cap_sys_admin`): census needs ptrace rights only.

Cases, on every supported interpreter installed here: census/<python>/counts (every type the
target counts at least 1000 of, but the growing Entry, within 2% of its own view; Invoice
among them), census/<python>/holder (__main__.LEDGER found, its length rate within 25% of
500/s, its new items Entry), census/<python>/text (the text report names Invoice and the
holder). Bad input: no such process (3), not a Python process (4), Python 3.7 (5), no ptrace
right (6, run as nobody), usage errors (2), a target that exits during the census (3, with
the JSON of what was counted on stdout).

The binary comes from $PMS_BIN (default ./pymemspy); PMS_E2E_TIMEOUT_SCALE multiplies every
deadline. Output: one line per case, then exactly `N passed, M failed`; exit status 1 if any
failed. Everything started here is killed in `finally`. Plain Python 3.8+ standard library only.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = os.path.join(REPO, "tests", "targets", "census_known.py")
PYENV = "/root/.pyenv/versions"
PYTHONS = [
    ("3.8.18", PYENV + "/3.8.18/bin/python3.8"),
    ("3.9.18", PYENV + "/3.9.18/bin/python3.9"),
    ("3.10.13", PYENV + "/3.10.13/bin/python3.10"),
    ("3.11.7", PYENV + "/3.11.7/bin/python3.11"),
    ("3.12.1", PYENV + "/3.12.1/bin/python3.12"),
    ("3.13.0", PYENV + "/3.13.0/bin/python3.13"),
    ("debian-3.11", "/usr/bin/python3.11"),
    ("debian-3.11d", "/usr/bin/python3.11d"),
]
PY37 = PYENV + "/3.7.16/bin/python3.7"
BIN = os.path.abspath(os.environ.get("PMS_BIN", "./pymemspy"))
SCALE = float(os.environ.get("PMS_E2E_TIMEOUT_SCALE", "1"))
VERBOSE = "-v" in sys.argv[1:]
ONLY = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv[1:-1] else None
DROP = "cap_bpf,cap_perfmon,cap_sys_admin"
RATE = 500.0
COUNT_TOLERANCE = 0.02
RATE_TOLERANCE = 0.25
MIN_COUNT = 1000


class Fail(Exception):
    pass


class Skip(Exception):
    pass


STARTED = []


def start_target(python, lifetime=None, rate=RATE):
    tmp = tempfile.mkdtemp(prefix="pms-census-")
    ready = os.path.join(tmp, "ready.json")
    args = [python, TARGET, ready, str(rate)] + ([str(lifetime)] if lifetime else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    STARTED.append((proc, tmp))
    end = time.monotonic() + 60 * SCALE
    while time.monotonic() < end:
        if os.path.exists(ready):
            with open(ready) as f:
                return proc, json.load(f)
        if proc.poll() is not None:
            raise Fail("target exited %d: %s" % (proc.returncode,
                                                 proc.stderr.read().decode(errors="replace")))
        time.sleep(0.1)
    raise Fail("target not ready within 60 s")


def census(args, timeout=60, drop=True, prefix=None):
    """Runs the binary (under capsh without the BPF capabilities); returns (rc, out, err)."""
    cmd = [BIN, "census"] + [str(a) for a in args]
    if prefix:
        cmd = prefix + cmd
    if drop:
        cmd = ["capsh", "--drop=" + DROP, "--", "-c", " ".join(shlex.quote(c) for c in cmd)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SCALE)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    if VERBOSE:
        sys.stderr.write("$ %s\n-> %d\n%s%s" % (" ".join(cmd), r.returncode, err, out[:2000]))
    return r.returncode, out, err


def check_schema(doc):
    for key in ("schema", "pid", "python", "duration", "snapshots", "paused_s", "types",
                "holders", "counters"):
        if key not in doc:
            raise Fail("JSON lacks %r" % key)
    if doc["schema"] != "pymemspy.census/1":
        raise Fail("schema %r" % doc["schema"])
    for key in ("objects_read", "torn_reads", "invalid_objects", "bytes_read"):
        if key not in doc["counters"]:
            raise Fail("counters lack %r" % key)
    for t in doc["types"][:5]:
        for key in ("type", "module", "count", "bytes", "count_rate", "bytes_rate"):
            if key not in t:
                raise Fail("a type lacks %r" % key)
    sizes = [t["bytes"] for t in doc["types"]]
    if sizes != sorted(sizes, reverse=True):
        raise Fail("types are not sorted by bytes")


def json_census(python, runs):
    """One census of a fresh target per interpreter, shared by its cases."""
    if python in runs:
        return runs[python]
    proc, view = start_target(python)
    try:
        rc, out, err = census(["--pid", view["pid"], "--duration", 4, "--interval", 1, "--json"])
        if rc != 0:
            raise Fail("exit %d: %s" % (rc, err.strip()))
        doc = json.loads(out)
        check_schema(doc)
        runs[python] = (view, doc)
        return runs[python]
    finally:
        proc.kill()
        proc.wait()


def case_counts(python, runs):
    view, doc = json_census(python, runs)
    own = view["counts"]
    ours = {"%s.%s" % (t["module"], t["type"]): t["count"] for t in doc["types"]}
    if own.get("__main__.Invoice") != 20000:
        raise Fail("the target counts %r Invoice" % own.get("__main__.Invoice"))
    worst, compared = [], 0
    for key, n in own.items():
        if n < MIN_COUNT or key == "__main__.Entry":
            continue
        compared += 1
        got = ours.get(key, 0)
        err = abs(got - n) / n
        worst.append((err, key, n, got))
        if err > COUNT_TOLERANCE:
            raise Fail("%s: %d counted, the target's own view says %d (%.1f%%)"
                       % (key, got, n, 100 * err))
    worst.sort(reverse=True)
    return "%d types compared, worst %s %.2f%%" % (compared, worst[0][1], 100 * worst[0][0])


def case_holder(python, runs):
    _, doc = json_census(python, runs)
    holders = [h for h in doc["holders"] if h["path"] == "__main__.LEDGER"]
    if not holders:
        raise Fail("no holder __main__.LEDGER among %s" % [h["path"] for h in doc["holders"]])
    h = holders[0]
    if h["type"] != "list":
        raise Fail("LEDGER's type %r" % h["type"])
    if abs(h["length_rate"] - RATE) > RATE_TOLERANCE * RATE:
        raise Fail("length rate %.1f/s, the target appends %.0f/s" % (h["length_rate"], RATE))
    if h["item_types"].get("Entry", 0) < 0.9:
        raise Fail("new items %r" % h["item_types"])
    if doc["holders"][0]["path"] != "__main__.LEDGER":
        raise Fail("the first holder is %s" % doc["holders"][0]["path"])
    return "length rate %.1f/s" % h["length_rate"]


def case_text(python, runs):
    proc, view = start_target(python)
    try:
        rc, out, err = census(["--pid", view["pid"], "--duration", 2, "--interval", 1])
    finally:
        proc.kill()
        proc.wait()
    if rc != 0:
        raise Fail("exit %d: %s" % (rc, err.strip()))
    for needle in ("__main__.Invoice", "__main__.LEDGER (list)", "Entry 100%"):
        if needle not in out:
            raise Fail("the text report lacks %r" % needle)


def expect_exit(args, code, needle=None, **kw):
    rc, out, err = census(args, **kw)
    if rc != code:
        raise Fail("exit %d, wanted %d: %s" % (rc, code, err.strip()))
    if needle and needle not in err:
        raise Fail("stderr lacks %r: %s" % (needle, err.strip()))
    return out


def case_no_process():
    expect_exit(["--pid", 4194304 + 1, "--duration", 0], 3, "no process")


def case_not_python():
    p = subprocess.Popen(["sleep", "30"])
    STARTED.append((p, None))
    try:
        time.sleep(0.2)
        expect_exit(["--pid", p.pid, "--duration", 0], 4, "not a Python process")
    finally:
        p.kill()
        p.wait()


def case_old_python():
    if not os.access(PY37, os.X_OK):
        raise Skip("no %s" % PY37)
    p = subprocess.Popen([PY37, "-c", "import time; time.sleep(30)"])
    STARTED.append((p, None))
    try:
        time.sleep(0.5)
        expect_exit(["--pid", p.pid, "--duration", 0], 5, "3.7")
    finally:
        p.kill()
        p.wait()


def case_no_privilege():
    if not shutil.which("setpriv"):
        raise Skip("no setpriv")
    proc, view = start_target(PYTHONS[3][1])
    tmp = tempfile.mkdtemp(prefix="pms-census-bin-")
    try:
        binary = os.path.join(tmp, "pymemspy")
        shutil.copy(BIN, binary)
        os.chmod(tmp, 0o755)
        os.chmod(binary, 0o755)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            binary, "census", "--pid", str(view["pid"]), "--duration", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * SCALE)
        err = r.stderr.decode(errors="replace")
        if r.returncode != 6:
            raise Fail("exit %d, wanted 6: %s" % (r.returncode, err.strip()))
        if "CAP_SYS_PTRACE" not in err or "ptrace_scope" not in err:
            raise Fail("the message names neither CAP_SYS_PTRACE nor ptrace_scope: %s" % err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        proc.kill()
        proc.wait()


def case_usage():
    expect_exit([], 2, "--pid is required", drop=False)
    expect_exit(["--pid", "1", "--interval", "0"], 2, drop=False)
    expect_exit(["--pid", "x"], 2, drop=False)


def case_target_exits():
    proc, view = start_target(PYTHONS[4][1], lifetime=3)
    try:
        out = expect_exit(["--pid", view["pid"], "--duration", 20, "--interval", 1, "--json"],
                          3, "exited")
    finally:
        proc.kill()
        proc.wait()
    doc = json.loads(out)
    check_schema(doc)
    if doc["snapshots"] < 1:
        raise Fail("no snapshot in the partial output")
    if not any(t["type"] == "Invoice" for t in doc["types"]):
        raise Fail("the partial output counts no Invoice")


def main():
    if not os.access(BIN, os.X_OK):
        print("no binary at %s (set PMS_BIN)" % BIN)
        return 1
    if not shutil.which("capsh"):
        print("capsh is missing: apt-get install libcap2-bin (tools/deps.sh)")
        return 1
    cases = []
    runs = {}
    for name, python in PYTHONS:
        for what, fn in (("counts", case_counts), ("holder", case_holder), ("text", case_text)):
            cases.append(("census/%s/%s" % (name, what), python,
                          (lambda fn=fn, python=python: fn(python, runs))))
    for what, fn in (("no-process", case_no_process), ("not-python", case_not_python),
                     ("python-3.7", case_old_python), ("no-privilege", case_no_privilege),
                     ("usage", case_usage), ("target-exits", case_target_exits)):
        cases.append(("census/bad-input/" + what, None, fn))
    passed = failed = 0
    try:
        for name, python, fn in cases:
            if ONLY and ONLY not in name:
                continue
            if python and not os.access(python, os.X_OK):
                print("SKIP %s: %s is not installed" % (name, python))
                continue
            t0 = time.monotonic()
            try:
                note = fn()
                passed += 1
                print("PASS %s (%.1f s)%s" % (name, time.monotonic() - t0,
                                              ": " + note if note else ""))
            except Skip as e:
                print("SKIP %s: %s" % (name, e))
            except (Fail, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                failed += 1
                print("FAIL %s: %s" % (name, e))
            sys.stdout.flush()
    finally:
        for proc, tmp in STARTED:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
