"""ref_cycles: reference cycles held by a global.

A job runner parks failed jobs in a module-level RETRY list "to retry later"; nothing retries.
Each failed job holds its 3 KB payload (bytes: memory of its own) and the exception it failed
with, whose traceback holds the frames of run_job and validate, whose locals hold the job
again: a reference cycle (job -> exception -> traceback -> frame -> job). The garbage collector
would free the cycle, but the global list keeps it reachable; the collector runs anyway (every
second, gc.collect()) and walks an ever larger heap.

Truth: leaks from load_payload (the 3 KB payload; the line that allocates it), run_job (the
job, the traceback entry and frame of run_job) and validate (the exception, its traceback entry
and frame), 25 KB/s by default.
"""
import gc
import sys

import leakcommon as lc

RETRY = []


class Job:
    def __init__(self, jid, payload):
        self.jid = jid
        self.payload = payload
        self.error = None


def load_payload(jid):
    return (b"%08d:" % jid) * 333               # 2997 bytes


def validate(job):
    if job.payload[-1:] != b"!":
        raise ValueError("job %d: payload is not terminated" % job.jid)


def run_job(jid, retry=RETRY):
    job = Job(jid, load_payload(jid))
    try:
        validate(job)
    except ValueError as exc:
        job.error = exc
        retry.append(job)
    return job


def main():
    sc = lc.Scenario("ref_cycles", "reference cycles held by a global", leaking=True,
                     functions=["load_payload", "run_job", "validate", "Job.__init__"],
                     rate=25 * lc.KB)
    scratch = []
    per_job = lc.calibrate(lambda i: run_job(i, scratch),
                           held=lambda: lc.block_cost(sys.getsizeof(scratch)))
    base = lc.block_cost(sys.getsizeof(RETRY))
    state = {"jid": 0, "gc": None}

    def tick(sc, now):
        while sc.behind(now):
            run_job(state["jid"])
            state["jid"] += 1
            sc.kept += per_job
        if state["gc"] is None or now >= state["gc"]:
            gc.collect()
            state["gc"] = now + 1.0

    sc.run(tick, held=lambda: lc.block_cost(sys.getsizeof(RETRY)) - base)


if __name__ == "__main__":
    main()
