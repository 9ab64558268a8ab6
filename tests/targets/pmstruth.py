"""Shared by the e2e targets: park threads at known places, then write the "truth" file.

The truth is what the interpreter itself says about its threads (sys._current_frames() and
traceback.extract_stack()), innermost frame first, with the name the interpreter would give each frame:
co_qualname on 3.11+, co_name before. The harness (tests/e2e/cases_dump.py) compares `pymemspy dump --json`
against it. Python 3.8+ only (threading.get_native_id).

Protocol, for every target built on this module:
  * each thread calls register(role) and then parks (park(), park_event(), or spins);
  * the main thread calls start_reporter(truth_path, expected) and then parks itself;
  * the reporter thread waits until every parked thread's stack is stable, writes the truth file
    atomically (tmp + rename) and exits, so it is not part of what the harness compares;
  * SIGUSR1 makes the main thread write TRUTH.pong (the harness's "is it still responsive?" probe).
"""
import json
import os
import platform
import signal
import sys
import threading
import time
import traceback

_lock = threading.Lock()
_registry = {}  # thread ident -> {"role": ..., "tid": native id, "spin": None or {...}}
_park_codes = set()
_all_registered = threading.Condition(_lock)


def qualname(code):
    """The name the interpreter itself gives a frame of this code object."""
    return getattr(code, "co_qualname", code.co_name)


def register(role, spin=None):
    """Record the calling thread under `role`. `spin` = {"function", "file", "first", "last"}
    for a thread that runs (its innermost frame moves within those lines)."""
    with _lock:
        _registry[threading.get_ident()] = {
            "role": role, "tid": threading.get_native_id(), "spin": spin}
        _all_registered.notify_all()


def park():
    """Block forever in a C call with the GIL released."""
    while True:
        time.sleep(1000)


def park_event():
    """Block forever in threading.Event().wait() (Python frames of threading.py on top)."""
    threading.Event().wait()


_park_codes.update((park.__code__, park_event.__code__))


def add_park_code(func):
    """Declare another function as a parking place (its frames count as parked)."""
    _park_codes.add(func.__code__)


def build():
    if hasattr(sys, "gettotalrefcount"):
        return "debug"
    try:
        import sysconfig
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            return "free-threaded"
    except Exception:
        pass
    return "release"


def frames_of(frame):
    """[{function, name, file, line}] innermost first, as the interpreter reports them."""
    summary = traceback.extract_stack(frame)  # outermost first
    codes = []
    f = frame
    while f is not None:
        codes.append(f.f_code)
        f = f.f_back
    codes.reverse()
    if len(codes) != len(summary):
        raise RuntimeError("extract_stack gave %d frames, f_back chain %d" % (len(summary), len(codes)))
    out = []
    for fs, code in zip(summary, codes):
        if fs.filename != code.co_filename or fs.name != code.co_name:
            raise RuntimeError("extract_stack and f_code disagree: %r vs %r" % (fs, code))
        out.append({"function": qualname(code), "name": code.co_name, "file": fs.filename,
                    "line": fs.lineno})
    out.reverse()
    return out


def _key(frame):
    k = []
    f = frame
    while f is not None:
        k.append((id(f.f_code), f.f_lineno))
        f = f.f_back
    return tuple(k)


def _is_parked(frame):
    f = frame
    while f is not None:
        if f.f_code in _park_codes:
            return True
        f = f.f_back
    return False


def _snapshot(me):
    frames = sys._current_frames()
    frames.pop(me, None)
    return frames


def _reporter(truth_path, expected, extra):
    me = threading.get_ident()
    deadline = time.time() + 60
    with _lock:
        while len(_registry) < expected:
            if time.time() > deadline:
                _fail(truth_path, "only %d of %d threads registered" % (len(_registry), expected))
                return
            _all_registered.wait(0.1)
    # Wait until every non-spinning thread sits in a parking function and its stack is the
    # same in three samples 20 ms apart (it is then blocked in the C call, not on its way).
    prev = None
    stable = 0
    while stable < 3:
        if time.time() > deadline:
            _fail(truth_path, "threads did not park")
            return
        time.sleep(0.02)
        snap = _snapshot(me)
        with _lock:
            reg = dict(_registry)
        keys = {}
        ok = True
        for ident, frame in snap.items():
            info = reg.get(ident)
            if info is not None and info["spin"] is not None:
                continue
            if info is not None and not _is_parked(frame):
                ok = False
            keys[ident] = _key(frame)
        if not ok or keys != prev:
            stable = 0
        else:
            stable += 1
        prev = keys if ok else None
        del snap
    snap = _snapshot(me)
    with _lock:
        reg = dict(_registry)
    natives = {}
    for t in threading.enumerate():
        natives[t.ident] = t.native_id
    threads = []
    for ident, frame in snap.items():
        info = reg.get(ident, {"role": "unregistered", "tid": natives.get(ident), "spin": None})
        threads.append({"tid": info["tid"], "role": info["role"], "spin": info["spin"],
                        "frames": frames_of(frame)})
    del snap
    threads.sort(key=lambda t: t["tid"] or 0)
    truth = {
        "pid": os.getpid(),
        "python": {"version": platform.python_version(), "build": build(),
                   "hexversion": sys.hexversion, "executable": sys.executable},
        "reporter_tid": threading.get_native_id(),
        "threads": threads,
    }
    if extra:
        truth.update(extra)
    _write(truth_path, truth)


def _write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=True)
        f.write("\n")
    os.rename(tmp, path)


def _fail(truth_path, why):
    sys.stderr.write("target: %s\n" % why)
    _write(truth_path, {"error": why, "pid": os.getpid()})


def _pong(signum, frame):
    with open(_pong_path, "w") as f:
        f.write("%d\n" % os.getpid())


_pong_path = None


def start_reporter(truth_path, expected, extra=None):
    """From the main thread: install the SIGUSR1 probe, then write the truth once `expected`
    threads (the main thread included) are registered and parked."""
    global _pong_path
    _pong_path = truth_path + ".pong"
    signal.signal(signal.SIGUSR1, _pong)
    t = threading.Thread(target=_reporter, args=(truth_path, expected, extra), name="reporter")
    t.daemon = True
    t.start()
    return t


def marker_lines(path, begin, end):
    """Line numbers of the lines holding the comments `begin` and `end` in `path`."""
    first = last = None
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if begin in text and first is None:
                first = n
            if end in text:
                last = n
    if first is None or last is None:
        raise RuntimeError("markers %s/%s not found in %s" % (begin, end, path))
    return first, last
