"""Refusals of dump and record, with their documented exit codes, and privileges.

dump and record on a pid that does not exist (exit 3), on a process that is not Python (sleep, also
copied as python3.11: exit 4), on the unsupported interpreters 2.7, 3.6 and 3.7 (exit 5, naming the
version), as user nobody against root's Python (exit 6, naming the capability); bad command lines
(exit 2, nothing on stdout) and --help (exit 0). Not root but the target's own user: dump works
(ptrace rights without a capability); record works or names CAP_BPF/CAP_PERFMON (exit 6).
"""
import os
import re
import shutil
import subprocess
import time

import harness
from harness import (
    Case, EXIT_NOPROC, EXIT_NOTPY, EXIT_PRIV, EXIT_UNSUPPORTED, EXIT_USAGE, Fail, Skip, TARGETS, UNSUPPORTED,
    expect_error, fail_with, first_interpreter, parse_json, python_target, short, wait_file)
from cases_dump import compare_dump, start_truth_target
from cases_record import parse_report, record_args

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


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
    r = subprocess.run(NOBODY + [harness.BIN, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode == 0:
        return harness.BIN
    raise Skip("user nobody cannot run %s (exit %d: %s)" % (harness.BIN, r.returncode, short(r.stderr, 200)))


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


def cases():
    cases = []
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
    for iid, path, sv in UNSUPPORTED:
        cases.append(Case("record/unsupported/" + iid, case_record_errors, ("unsupported", (path, sv)), needs=path))
    cases += [
        Case("record/no-such-pid", case_record_errors, ("no-such-pid",)),
        Case("record/not-python", case_record_errors, ("not-python",)),
        Case("record/no-privilege", case_record_errors, ("no-privilege",)),
        Case("record/usage", case_record_usage),
    ]
    return cases
