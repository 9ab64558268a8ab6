"""What the benchmarks share: finding the interpreter and pymemspy, the host's facts, pinning,
reading /proc, running a workload with its live counter, and running `pymemspy record`.

Python 3.6+ standard library only.
"""
import json
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
WORKLOADS = os.path.join(BENCH, "workloads")
DEFAULT_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
COUNTER_FORMAT = "@QQQ"     # as in workloads/wlcommon.py
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

EXIT_NAMES = {0: "ok", 1: "failure", 2: "bad command line", 3: "target exited",
              4: "not CPython", 5: "unsupported CPython", 6: "missing privilege",
              7: "bad record file", 8: "kernel feature missing", 9: "inconsistent read"}


class BenchError(Exception):
    pass


# ---- finding things ----

def default_python():
    for cand in (DEFAULT_PYTHON, shutil.which("python3.11"), shutil.which("python3"), sys.executable):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BenchError("no Python interpreter found; pass --python")


def default_pymemspy():
    for cand in (os.path.join(REPO, "pymemspy"), os.path.join(REPO, "build", "pymemspy"),
                 shutil.which("pymemspy")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BenchError("no pymemspy binary (run `make` in %s, or pass --pymemspy)" % REPO)


def binary_info(path):
    """'built <mtime>, git <commit>' of a pymemspy binary (the repo's HEAD when it is the repo's own
    build, '+ local changes' when the tree differs), for the header of a benchmark's output: the
    figures belong to that build."""
    try:
        info = "built %s" % time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(path).st_mtime))
    except OSError:
        return "?"
    if os.path.realpath(path).startswith(os.path.realpath(REPO) + os.sep):
        try:
            head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "src", "bpf"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                   timeout=10).stdout.strip()
            if head:
                info += ", git %s%s" % (head, " + local changes" if dirty else "")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def python_version(python):
    out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    return out.stdout.strip() or "?"


def record_support(pymemspy):
    """(True, '') when `pymemspy record` exists, else (False, why)."""
    try:
        p = subprocess.run([pymemspy, "record", "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        first = (p.stderr or p.stdout).strip().splitlines()
        return False, first[0] if first else "exit %d" % p.returncode
    return True, ""


def cpus():
    return sorted(os.sched_getaffinity(0))


def pin_self(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass


def _pinner(cpu):
    def f():
        os.sched_setaffinity(0, {cpu})
    return f


# ---- the host ----
# Hosts differ by an order of magnitude in what a uprobe or a watchpoint trap costs (and on some,
# watchpoints never trap), so every program prints these facts before its figures and keeps them
# with its results: figures are only compared within one run on one host.

def _first(path):
    try:
        with open(path) as f:
            return f.readline().strip() or None
    except OSError:
        return None


def _detect_virt(kind):
    """systemd-detect-virt --vm / --container: the vendor ('kvm', 'docker'), None for none or
    when the tool is missing."""
    tool = shutil.which("systemd-detect-virt")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, kind], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out if out and out != "none" else None


def doctor_json(pymemspy):
    """(parsed `pymemspy doctor --json`, None) or (None, why). Doctor exits non-zero when a check
    fails but still prints its report, so the exit status is not looked at."""
    if not pymemspy:
        return None, "no pymemspy binary"
    try:
        p = subprocess.run([pymemspy, "doctor", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, universal_newlines=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        err = (p.stderr or p.stdout).strip().splitlines()
        return None, "no JSON from doctor (exit %d%s)" % (p.returncode, ": " + err[0] if err else "")
    return (doc, None) if isinstance(doc, dict) else (None, "doctor's JSON is not an object")


COST_KEYS = ("uprobe_trap_ns", "uretprobe_trap_ns", "watchpoint_trap_ns")


def host_facts(pymemspy=None):
    """The host's facts as a dict: CPU model, CPU count, virtual machine (the `hypervisor` cpu flag)
    and its vendor, container, kernel release; and from `pymemspy doctor --json`: the trap costs
    it measured (`costs`, a key absent from an older doctor is left out), whether a watchpoint
    write traps (its `selftest:watchpoint` check, None when it has none) and its `host` object."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and model is None:
                    model = " ".join(v.split())
                elif k == "flags" and not flags:
                    flags = set(v.split())
    except OSError:
        pass
    vm = "hypervisor" in flags if flags else None
    facts = {"cpu_model": model, "cpus": os.cpu_count(), "virtual_machine": vm,
             "hypervisor": (_detect_virt("--vm") or _first("/sys/hypervisor/type")) if vm is not False else None,
             "container": _detect_virt("--container"), "kernel": os.uname().release,
             "pymemspy": pymemspy, "costs": {}, "watchpoint_traps": None, "doctor_host": None,
             "doctor_error": None}
    doc, why = doctor_json(pymemspy)
    if doc is None:
        facts["doctor_error"] = why
        return facts
    costs = doc.get("costs")
    if isinstance(costs, dict):
        facts["costs"] = {k: costs[k] for k in COST_KEYS if k in costs}
    for c in doc.get("checks") or []:
        if isinstance(c, dict) and c.get("name") == "selftest:watchpoint":
            facts["watchpoint_traps"] = bool(c.get("ok"))
    if isinstance(doc.get("host"), dict):
        facts["doctor_host"] = doc["host"]
    return facts


def _cost(facts, key, label):
    costs = facts.get("costs") or {}
    if key not in costs:
        return "%s trap unknown" % label
    v = costs[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "%s trap %.0f ns" % (label, v)
    if key == "watchpoint_trap_ns" and facts.get("watchpoint_traps") is False:
        return "watchpoints do not trap"
    return "%s trap unavailable" % label


def host_summary(facts):
    """One line: 'Intel(R) Xeon(R) Processor, 2 CPUs, virtual machine (kvm), Linux 6.18.44; uprobe
    trap 4700 ns, uretprobe trap 5200 ns, watchpoint trap 16387 ns'. Also the tag of SUMMARY lines."""
    cpu = "%s, %s CPUs" % (facts.get("cpu_model") or "unknown CPU", facts.get("cpus") or "?")
    vm = facts.get("virtual_machine")
    if vm:
        cpu += ", virtual machine (%s)" % (facts.get("hypervisor") or "hypervisor unknown")
    else:
        cpu += ", bare metal" if vm is False else ", VM unknown"
    if facts.get("container"):
        cpu += ", in a %s container" % facts["container"]
    cpu += ", Linux %s" % facts.get("kernel")
    return "%s; %s" % (cpu, ", ".join(_cost(facts, k, k.split("_")[0]) for k in COST_KEYS))


def host_lines(facts):
    """The header lines: the summary with where the costs come from, and doctor's own `host`
    object when it has one."""
    src = "pymemspy doctor --json"
    if facts.get("doctor_error"):
        src += ": %s" % facts["doctor_error"]
    lines = ["host: %s (%s)" % (host_summary(facts), src)]
    if facts.get("doctor_host"):
        lines.append("host (doctor): " + ", ".join("%s %s" % (k, v) for k, v in sorted(facts["doctor_host"].items())))
    return lines


def print_host(facts, out=sys.stdout):
    for line in host_lines(facts):
        out.write(line + "\n")
    out.flush()


# ---- /proc ----

def proc_stat(pid):
    """(cpu seconds = utime+stime, minor faults, major faults) of the whole process."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): minflt is field 10, majflt 12, utime 14, stime 15
    return ((int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[7]), int(rest[9]))


def proc_status(pid, key):
    """A kB field of /proc/PID/status (VmHWM, VmRSS, ...) in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fd_kinds(pid):
    """{link target: count} over the process's descriptors (anon_inode:bpf-map, ...)."""
    kinds = {}
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return kinds
    for n in names:
        try:
            t = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        kinds[t] = kinds.get(t, 0) + 1
    return kinds


def bpf_links(pid):
    k = fd_kinds(pid)
    return k.get("anon_inode:bpf_link", 0) + k.get("anon_inode:bpf-link", 0)


def bpf_map_bytes(pid):
    """Kernel memory charged to the BPF maps the process holds (memlock of each map, once)."""
    d = "/proc/%d/fd" % pid
    seen = {}
    try:
        names = os.listdir(d)
    except OSError:
        return None
    for n in names:
        try:
            if "bpf-map" not in os.readlink(os.path.join(d, n)):
                continue
            info = {}
            with open("/proc/%d/fdinfo/%s" % (pid, n)) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    info[k.strip()] = v.strip()
            seen[info.get("map_id", n)] = int(info.get("memlock", "0"))
        except (OSError, ValueError):
            continue
    return sum(seen.values())


# ---- BPF run-time statistics ----

_SYS_BPF = 321              # x86_64
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0


def enable_bpf_stats():
    """Turns on the kernel's per-program run-time statistics for as long as the returned
    descriptor stays open (BPF_ENABLE_STATS: nothing to restore afterwards). Returns (fd, None)
    or (None, why). While on, every BPF program on the host pays two clock reads per run."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        attr = ctypes.create_string_buffer(16)          # union bpf_attr { __u32 type; } enable_stats
        struct.pack_into("=I", attr, 0, _BPF_STATS_RUN_TIME)
        fd = libc.syscall(_SYS_BPF, _BPF_ENABLE_STATS, attr, ctypes.sizeof(attr))
        if fd < 0:
            return None, os.strerror(ctypes.get_errno())
        return fd, None
    except (OSError, AttributeError) as e:
        return None, str(e)


def prog_stats(pid):
    """{prog_id: (run_time_ns, run_cnt)} of the BPF programs the process holds descriptors of."""
    out = {}
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            if "bpf-prog" not in os.readlink(os.path.join(d, n)):
                continue
            info = {}
            with open("/proc/%d/fdinfo/%s" % (pid, n)) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    info[k.strip()] = v.strip()
            if "prog_id" in info and "run_time_ns" in info:
                out[int(info["prog_id"])] = (int(info["run_time_ns"]), int(info.get("run_cnt", "0")))
        except (OSError, ValueError):
            continue
    return out


def prog_names(ids):
    """{prog_id: name} with bpftool when it is there (else empty)."""
    names = {}
    bpftool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if not bpftool or not ids:
        return names
    for i in ids:
        try:
            p = subprocess.run([bpftool, "-j", "prog", "show", "id", str(i)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
            names[i] = json.loads(p.stdout).get("name", "?")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
    return names


# ---- a workload with its live counter ----

class Target:
    """A workload from bench/workloads, pinned to one CPU, with its shared counter."""

    def __init__(self, workload, python, cpu, tmpdir, args=()):
        path = os.path.join(WORKLOADS, workload + ".py")
        if not os.path.exists(path):
            raise BenchError("no workload %s" % path)
        self.workload = workload
        fd, self.counter = tempfile.mkstemp(prefix="ctr-%s-" % workload, dir=tmpdir)
        os.ftruncate(fd, PAGE)
        os.close(fd)
        with open(self.counter, "rb") as f:
            self._cf = mmap.mmap(f.fileno(), PAGE, prot=mmap.PROT_READ)
        self.out = open(os.path.join(tmpdir, "target-%s.out" % workload), "w+")
        self.proc = subprocess.Popen([python, path, "--counter", self.counter] + list(args),
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_pinner(cpu))
        self.pid = self.proc.pid

    def counters(self):
        """(iterations, leaked bytes, grown bytes). Both sides use native 8-byte copies of aligned
        fields of a shared mapping, so no value is torn; the fields may be one iteration apart."""
        return struct.unpack_from(COUNTER_FORMAT, self._cf, 0)

    def wait_running(self, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BenchError("workload %s exited early: %s" % (self.workload, self.output()))
            if self.counters()[0] > 0:
                return
            time.sleep(0.01)
        raise BenchError("workload %s did not start within %.0f s" % (self.workload, timeout))

    def snapshot(self):
        """Work counters, target CPU (utime+stime) and faults, read together."""
        c = self.counters()
        cpu, minflt, majflt = proc_stat(self.pid)
        return {"t": time.monotonic(), "iters": c[0], "leaked": c[1], "grown": c[2],
                "cpu": cpu, "minflt": minflt, "majflt": majflt,
                "rss": proc_status(self.pid, "VmRSS")}

    def output(self):
        self.out.flush()
        self.out.seek(0)
        return self.out.read().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        res = {}
        for line in self.output().splitlines():
            if line.startswith("RESULT "):
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    res[k] = v
        self._cf.close()
        self.out.close()
        try:
            os.unlink(self.counter)
        except OSError:
            pass
        return res


# ---- pymemspy record ----

class Recorder:
    """`pymemspy record --pid PID --json` pinned to one CPU, stopped with SIGINT."""

    def __init__(self, pymemspy, pid, events, cpu, tmpdir, tag, max_seconds=3600, extra=(),
                 command="record"):
        self.stdout_path = os.path.join(tmpdir, "report-%s.json" % tag)
        self.stderr_path = os.path.join(tmpdir, "record-%s.err" % tag)
        self.live = command == "top"
        if self.live:
            # `top` with stdout not a terminal: a plain-text snapshot every second, no JSON
            self.argv = [pymemspy, "top", "--pid", str(pid), "--events", events,
                         "--duration", "%g" % max_seconds, "--interval", "1"] + list(extra)
        else:
            self.argv = [pymemspy, "record", "--pid", str(pid), "--events", events,
                         "--duration", "%g" % max_seconds, "--json", "--quiet"] + list(extra)
        self._out = open(self.stdout_path, "w")
        self._err = open(self.stderr_path, "w")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, preexec_fn=_pinner(cpu))
        self.pid = self.proc.pid
        self.attach_seconds = None

    def command(self):
        return " ".join(self.argv)

    def stderr_tail(self, n=8):
        try:
            with open(self.stderr_path) as f:
                lines = f.read().strip().splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _failed(self, what):
        rc = self.proc.returncode
        return BenchError("%s: `%s` exited %s (%s)%s" % (
            what, self.command(), rc, EXIT_NAMES.get(rc, "?"),
            ("\n    " + self.stderr_tail().replace("\n", "\n    ")) if self.stderr_tail() else ""))

    def wait_attached(self, timeout=30.0, stable=0.3):
        """Waits until the process holds BPF links and their number has not changed for `stable`
        seconds. Returns the seconds it took. Without links after `timeout` (a build that
        attaches differently), carries on."""
        end = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise self._failed("pymemspy exited while attaching")
            n = bpf_links(self.pid)
            now = time.monotonic()
            if n != last:
                last, since = n, now
            elif n > 0 and now - since >= stable:
                self.attach_seconds = since - self.t_start
                return self.attach_seconds
            time.sleep(0.02)
        self.attach_seconds = timeout
        sys.stderr.write("warning: pymemspy holds no BPF link after %.0f s; measuring anyway\n" % timeout)
        return timeout

    def own_cost(self):
        """The profiler's CPU seconds so far, peak RSS, and the memory of its BPF maps."""
        try:
            cpu = proc_stat(self.pid)[0]
        except OSError:
            cpu = None
        return {"cpu": cpu, "hwm": proc_status(self.pid, "VmHWM"),
                "maps": bpf_map_bytes(self.pid)}

    def stop(self, timeout=120.0):
        """SIGINT, then the parsed JSON report (BenchError when there is none)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                self._out.close()
                self._err.close()
                raise BenchError("pymemspy did not finish within %.0f s of SIGINT" % timeout)
        self._out.close()
        self._err.close()
        if self.live:
            return {}  # top prints snapshots, not a report: its own cost comes from /proc
        try:
            with open(self.stdout_path) as f:
                text = f.read()
            return json.loads(text)
        except (OSError, ValueError) as e:
            raise self._failed("no JSON report (%s)" % e)


# ---- formatting ----

def mb(n):
    return "-" if n is None else "%.1f MB" % (n / 1e6)


def pct(x, digits=1):
    return "-" if x is None else "%.*f%%" % (digits, 100.0 * x)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2.0


def table(headers, rows, out=sys.stdout):
    """Left-aligned text table."""
    cols = [headers] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    def line(r):
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    out.write(line(headers) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cols[1:]:
        out.write(line(r) + "\n")
