"""request_list: request objects appended to a global list.

A web handler keeps every parsed request in a module-level list "for debugging" and nobody ever
trims it. A request is a plain class instance with a small dict of headers, a path and an id:
only small objects (all under 512 bytes, served by pymalloc from the same pools as the
background churn), which is the hard case for first-touch attribution.

Truth: leaks from parse_request (headers, path, id strings), Request.__init__ (the instance and
its attribute values) and handle_request (the list), 25 KB/s by default.
"""
import sys

import leakcommon as lc

HISTORY = []
AGENTS = ("curl/8.4.0", "Mozilla/5.0 (X11; Linux x86_64)", "python-requests/2.31",
          "Go-http-client/1.1")


class Request:
    def __init__(self, method, path, headers, rid):
        self.method = method
        self.path = path
        self.headers = headers
        self.rid = rid
        self.user = None


def parse_request(i):
    headers = {"host": "api.example.com", "user-agent": AGENTS[i % 4],
               "x-request-id": "%016x" % (i * 2654435761 % (1 << 64)),
               "accept": "application/json"}
    return Request("GET", "/api/items/%d?page=%d" % (i, i % 7), headers, i + 1000000)


def handle_request(i):
    req = parse_request(i)
    HISTORY.append(req)
    return req


def main():
    sc = lc.Scenario("request_list", "request objects appended to a global list", leaking=True,
                     functions=["parse_request", "Request.__init__", "handle_request"],
                     rate=25 * lc.KB)
    per_request = lc.calibrate(parse_request)
    base = lc.block_cost(sys.getsizeof(HISTORY))
    state = {"i": 0}

    def tick(sc, now):
        while sc.behind(now):
            handle_request(state["i"])
            state["i"] += 1
            sc.kept += per_request

    sc.run(tick, held=lambda: lc.block_cost(sys.getsizeof(HISTORY)) - base)


if __name__ == "__main__":
    main()
