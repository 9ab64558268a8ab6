"""logging_handlers: a logging handler added per request.

Each request attaches a handler to the application's logger to tag its own lines with the
request id (meant to be removed at the end of the request; it never is). The handlers pile up
on the logger, each with its lock, its filter list, its weak references in logging's module
registries: small objects only (all under 512 bytes, served by pymalloc from the same pools as
the background churn). Every log call also walks all of them: the service slows down as it
leaks. (The handlers only emit WARNING and above and the requests log at INFO, so nothing is
written.)

Truth: leaks from handle_request (the line that creates and adds the handler) and the helpers
that allocate inside: RequestTagHandler.__init__ and, in the logging package,
Filterer.__init__, Handler.__init__, Handler.createLock, _addHandlerRef,
_register_at_fork_reinit_lock, Logger.addHandler, WeakSet.add, and threading.RLock; 25 KB/s
by default.
"""
import logging
import sys

import leakcommon as lc

LOG = logging.getLogger("app.requests")
LOG.setLevel(logging.INFO)
LOG.propagate = False


class RequestTagHandler(logging.Handler):
    def __init__(self, request_id):
        super().__init__(level=logging.WARNING)
        self.request_id = request_id
        self.prefix = "[req %08x] " % request_id

    def emit(self, record):
        sys.stderr.write(self.prefix + self.format(record) + "\n")


def handle_request(rid, logger=LOG):
    logger.addHandler(RequestTagHandler(rid))
    logger.info("request %d started", rid)


def main():
    sc = lc.Scenario("logging_handlers", "a logging handler added per request", leaking=True,
                     functions=["handle_request", "RequestTagHandler.__init__",
                                "Filterer.__init__", "Handler.__init__", "Handler.createLock",
                                "_addHandlerRef", "_register_at_fork_reinit_lock",
                                "Logger.addHandler", "WeakSet.add", "RLock"],
                     rate=25 * lc.KB)
    scratch = logging.getLogger("calibration.scratch")
    scratch.setLevel(logging.INFO)
    scratch.propagate = False

    def held_now():
        # the containers that keep the handlers: the logger's list, logging's registries
        return (lc.block_cost(sys.getsizeof(LOG.handlers))
                + lc.block_cost(sys.getsizeof(logging._handlerList))
                + lc.block_cost(sys.getsizeof(logging._at_fork_reinit_lock_weakset.data)))

    per_handler = lc.calibrate(
        lambda i: handle_request(i, scratch),
        held=lambda: held_now() + lc.block_cost(sys.getsizeof(scratch.handlers)))
    base = held_now()
    state = {"rid": 0}

    def tick(sc, now):
        while sc.behind(now):
            handle_request(state["rid"])
            state["rid"] += 1
            sc.kept += per_handler

    sc.run(tick, held=lambda: held_now() - base)


if __name__ == "__main__":
    main()
