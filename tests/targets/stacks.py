"""e2e target: many threads parked at known places (usage: stacks.py TRUTH.json).

Covers nested calls, several threads, generators (with `yield from` and a generator expression),
an async coroutine blocked inside the event loop, methods of a nested class, classmethods and
staticmethods, a class local to a function, lambdas, list and dict comprehensions (inlined from 3.12),
recursion 150 deep, a thread blocked in Event.wait(), and non-ASCII function, class and file names
(modules written to a non-ASCII directory next to the truth file and imported from there).
Writes the truth (see pmstruth.py) once everything is parked, then stays parked until killed.
"""
import asyncio
import importlib
import importlib.util
import os
import sys
import threading

import pmstruth
from pmstruth import park, register

RECURSION_DEPTH = 150


# --- nested calls ---------------------------------------------------------------------------
def nested_a():
    register("nested")
    return nested_b(1)


def nested_b(x):
    return nested_c(x, 2)


def nested_c(x, y):
    park()
    return x + y


# --- methods: nested class, classmethod, staticmethod, local class ----------------------------
class Outer:
    class Inner:
        def method(self):
            return Outer.helper()

    @classmethod
    def helper(cls):
        return cls._static()

    @staticmethod
    def _static():
        park()


def methods_entry():
    register("methods")
    Outer.Inner().method()


def local_class_entry():
    class Local:
        def run(self):
            park()

    register("local_class")
    Local().run()


# --- lambda ---------------------------------------------------------------------------------
def lambda_entry():
    register("lambda")
    f = lambda: park()  # noqa: E731
    f()


# --- comprehensions and a generator expression --------------------------------------------
def listcomp_entry():
    register("listcomp")
    return [park() for _ in range(1)]


def dictcomp_entry():
    register("dictcomp")
    return {k: park() for k in range(1)}


def genexpr_entry():
    register("genexpr")
    return list(park() for _ in range(1))


# --- generators -----------------------------------------------------------------------------
def gen_body():
    yield 1
    park()
    yield 2


def gen_outer():
    yield 0
    yield from gen_body()


def generator_entry():
    register("generator")
    g = gen_outer()
    next(g)
    next(g)
    next(g)


# --- async: a coroutine blocked (synchronously) inside the event loop ----------------------
async def async_inner():
    await asyncio.sleep(0)
    park()


async def async_outer():
    await async_inner()


def async_entry():
    register("async")
    asyncio.run(async_outer())


# --- recursion deeper than 100 ------------------------------------------------------------
def recurse(n):
    if n == 0:
        park()
    return recurse(n - 1)


def recursion_entry():
    register("recursion")
    recurse(RECURSION_DEPTH)


# --- Event.wait -----------------------------------------------------------------------------
def event_entry():
    register("event")
    pmstruth.park_event()


# --- non-ASCII names --------------------------------------------------------------------------
# Latin-1 and BMP (2-byte) names in a module whose file name mixes both; a 4-byte (astral)
# function name in a module whose file name holds an emoji (loaded by path: not an identifier).
UNICODE_MODULE = "t\u00ebst_\u00fcn\u00efcode_\u6a21\u5757"
UNICODE_SRC = '''\
# -*- coding: utf-8 -*-
class Kl\u00e4sse:
    def m\u00e9thode(self, nxt):
        return \u51fd\u6570(nxt)


def \u51fd\u6570(nxt):
    return nxt()


def f\u00fcnction(nxt):
    return Kl\u00e4sse().m\u00e9thode(nxt)
'''
ASTRAL_FILE = "ucs4_\U0001f40d_\u0444\u0430\u0439\u043b.py"
ASTRAL_FUNC = "\U00020000"
ASTRAL_SRC = '''\
# -*- coding: utf-8 -*-
import pmstruth


def \U00020000():
    pmstruth.park()
'''


def load_unicode_modules(workdir):
    d = os.path.join(workdir, "m\u00f6d\u00fcl\u00e9_\u76ee\u5f55")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, UNICODE_MODULE + ".py"), "w", encoding="utf-8") as f:
        f.write(UNICODE_SRC)
    with open(os.path.join(d, ASTRAL_FILE), "w", encoding="utf-8") as f:
        f.write(ASTRAL_SRC)
    sys.path.insert(0, d)
    importlib.invalidate_caches()
    mod = importlib.import_module(UNICODE_MODULE)
    spec = importlib.util.spec_from_file_location("ucs4mod", os.path.join(d, ASTRAL_FILE))
    astral = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(astral)
    return mod, astral


def unicode_entry(mod, astral):
    register("unicode")
    getattr(mod, "f\u00fcnction")(getattr(astral, ASTRAL_FUNC))


# --- main -----------------------------------------------------------------------------------
def main_park():
    park()


def main():
    truth = os.path.abspath(sys.argv[1])
    mod, astral = load_unicode_modules(os.path.dirname(truth))
    entries = [nested_a, methods_entry, local_class_entry, lambda_entry, listcomp_entry,
               dictcomp_entry, genexpr_entry, generator_entry, async_entry, recursion_entry,
               event_entry]
    threads = [threading.Thread(target=e, name=e.__name__) for e in entries]
    threads.append(threading.Thread(target=unicode_entry, args=(mod, astral), name="unicode"))
    for t in threads:
        t.daemon = True
        t.start()
    register("main")
    pmstruth.start_reporter(truth, len(threads) + 1,
                            {"target": "stacks", "recursion_depth": RECURSION_DEPTH})
    main_park()


if __name__ == "__main__":
    main()
