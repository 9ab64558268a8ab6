"""bounded_lru: a bounded LRU cache that fills, then plateaus (must NOT be flagged).

A page renderer memoizes with @functools.lru_cache(maxsize=400): ~2.1 KB of HTML per page
(memory of its own), page ids spread widely so nearly every request misses. For the first ~8 s
the cache fills (about 100 KB/s, as fast as the dict_cache leak); from then on every miss evicts
the least recently used page: a freed string is replaced by a new one of the same size and the
memory stays flat.

Truth: not leaking. The truth file's samples are what the cache holds (for information).
"""
import functools

import leakcommon as lc

MAXSIZE = 400


@functools.lru_cache(maxsize=MAXSIZE)
def render_page(page_id):
    # every page the same length (ids of 7 digits): a freed page fits the next one exactly
    items = "".join("<li><a href='/p/%07d/%02d'>item %02d of page %07d</a></li>"
                    % (page_id, k, k, page_id) for k in range(32))
    return "<html><body><h1>page %07d</h1><ul>%s</ul></body></html>" % (page_id, items)


def handle_request(n):
    page_id = (n * 2654435761) % 1000003            # nearly always a miss
    return len(render_page(page_id))


def main():
    sc = lc.Scenario("bounded_lru", "a bounded LRU cache that fills and plateaus", leaking=False,
                     functions=[], rate=100 * lc.KB)
    per_entry = lc.calibrate(lambda i: render_page.__wrapped__(i)) + lc.obj_cost(10 ** 6)
    model = lc.DictModel(MAXSIZE + 1)
    node = 80           # lru_cache's link in its C-level list (a small object per entry)
    rps = sc.args.rate / per_entry                  # misses per second while filling
    state = {"n": 0}

    def held():
        k = render_page.cache_info().currsize
        return k * (per_entry + node) + model.size(k) - model.size(0)

    def tick(sc, now):
        due = int(rps * (now - sc.t0))
        while state["n"] < due:
            handle_request(state["n"])
            state["n"] += 1

    sc.run(tick, held=held)


if __name__ == "__main__":
    main()
