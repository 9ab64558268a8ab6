#!/usr/bin/env python3
"""End-to-end tests of `pymemspy dump` and `pymemspy record` against real CPython processes.

    python3 tests/e2e/run.py [--subset] [--only PATTERN] [-v] [-j N] [--keep] [--list] [--targets-only]

The binary comes from $PMS_BIN (default ./pymemspy, then the repository's ./pymemspy).

The cases live in one module per command, each documenting its own: cases_dump.py (dump against
targets that know their stacks), cases_record.py (record --events growth and survivors),
cases_alloc.py (record --events malloc|pymalloc), cases_report.py (record -o FILE, report FILE,
report --diff), cases_doctor.py (doctor --json), cases_errors.py (refusals: bad input, missing
processes, unsupported interpreters and privileges, with their exit codes). harness.py runs them.

Host features: `doctor --json` runs once per run (doctor/json checks its schema, the checks, modes,
costs and host, and that the watchpoint self-test, its trap cost and the survivors mode agree). Cases
needing a feature doctor says the host lacks print `SKIP case: <feature> unavailable on this host
(<evidence>)`: every record/survivors/* case needs watchpoints that trap. record/survivors/refused runs
on every host: where watchpoints trap it first takes every hardware debug register
(tests/targets/hold_debugregs.py), while the cases that open watchpoints wait. A doctor without the
check leaves the feature unknown and the cases run.

Every case runs under a deadline and kills its process groups whatever happens. Output: one line per case
(PASS/FAIL/SKIP name: detail), then exactly `N passed, M failed[, K skipped]`; exit status 1 if any failed.
Plain Python 3.8+ standard library only.

Environment: PMS_BIN, PMS_E2E_JOBS (parallel cases, default 3), PMS_E2E_TIMEOUT_SCALE (multiply every
deadline, default 1, 3 with --subset for sanitizer builds), PMS_E2E_SEED (seed of the exit-timing cases).
"""
import argparse
import fnmatch
import os
import sys

import cases_alloc
import cases_doctor
import cases_dump
import cases_errors
import cases_record
import cases_report
import harness

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


def all_cases(opts):
    if opts.targets_only:
        cases = cases_dump.target_cases() + cases_record.target_cases()
    else:
        cases = (cases_dump.cases() + cases_errors.cases() + cases_doctor.cases() + cases_record.cases() +
                 cases_alloc.cases() + cases_report.cases())
    cases.sort(key=lambda c: -c.cost)  # stable: the longest first, otherwise in the order above
    if opts.subset:
        cases = [c for c in cases if c.name in SUBSET]
    if opts.only:
        pats = opts.only
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in pats)]
    return cases


def main():
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
    opts = ap.parse_args()
    harness.configure(opts)
    cases = all_cases(opts)
    if opts.list:
        for c in cases:
            print(c.name)
        return 0
    return harness.run(cases)


if __name__ == "__main__":
    sys.exit(main())
