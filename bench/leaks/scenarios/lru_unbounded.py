"""lru_unbounded: functools.lru_cache(maxsize=None) on unbounded keys.

A geocoder memoizes its answers with @functools.lru_cache(maxsize=None) (an unbounded dict
inside functools' C wrapper), keyed by the address string of each request. Addresses never
repeat often enough: the cache keeps every one, with its answer (a tuple of two floats and the
city name). Small objects only (all under 512 bytes: pymalloc, the same pools as the churn).

Truth: leaks from geocode (the answer: tuple, floats, city; the lines that allocate it) and
handle_request (the address string, and the cache's dict, grown by the C wrapper called from
that line), 25 KB/s by default.
"""
import functools
import zlib

import leakcommon as lc

STREETS = ("Oak", "Maple", "Cedar", "Pine", "Elm", "Walnut", "Birch", "Willow", "Spruce", "Ash")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Madison",
          "Georgetown", "Salem", "Franklin", "Clinton")


@functools.lru_cache(maxsize=None)
def geocode(address):
    h = zlib.crc32(address.encode())
    city = address.rsplit(", ", 1)[1].lower()
    return (h % 18000 / 100.0 - 90.0, h // 18000 % 36000 / 100.0 - 180.0, city)


def handle_request(i, lookup=geocode):
    address = "%d %s Street, %s" % (i, STREETS[i % 10], CITIES[i // 10 % 10])
    lat, lon, city = lookup(address)
    return lat + lon


def main():
    sc = lc.Scenario("lru_unbounded", "functools.lru_cache(maxsize=None) on unbounded keys",
                     leaking=True, functions=["geocode", "handle_request"],
                     rate=25 * lc.KB)
    # an entry without the cache's dict (counted apart, by the model of a dict of str keys)
    def entry(i):
        address = "%d %s Street, %s" % (i, STREETS[i % 10], CITIES[i // 10 % 10])
        return (address, geocode.__wrapped__(address))

    per_entry = lc.calibrate(entry) - lc.obj_cost((None, None))
    model = lc.DictModel(int(sc.args.rate * max(sc.args.seconds, 60) / per_entry * 1.2) + 64)
    state = {"i": 0}

    def tick(sc, now):
        while sc.behind(now):
            handle_request(state["i"])
            state["i"] += 1
            sc.kept += per_entry

    sc.run(tick, held=lambda: model.size(geocode.cache_info().currsize) - model.size(0))


if __name__ == "__main__":
    main()
