"""`pymemspy doctor --json` (pymemspy.doctor/1): its checks (the self-tests among them), the modes
(each with its cost, survivors among them), the measured trap costs and the host, all consistent with
each other and its exit status with the text report's.
"""

from harness import Case, EXIT_HOST, EXIT_OK, EXIT_PRIV, Fail, is_int, parse_json, positive

DOCTOR_COSTS = ("uprobe_trap_ns", "uretprobe_trap_ns", "watchpoint_trap_ns")
DOCTOR_MODES = ("dump", "record --events growth", "record --events malloc", "record --events pymalloc",
                "record --events survivors")
DOCTOR_SELFTESTS = ("selftest:tracepoint", "selftest:uprobe", "selftest:watchpoint")


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


def cases():
    return [Case("doctor/json", case_doctor_json, cost=3, debugregs="shared")]  # it times a watchpoint
