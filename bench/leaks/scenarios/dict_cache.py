"""dict_cache: an unbounded dict used as a cache.

A profile page service memoizes rendered HTML fragments in a module-level dict, keyed by user
id. Users keep coming (the id space is unbounded), nothing is ever evicted: every new user adds
a ~1.5 KB string (malloc'd: memory of its own) and a small key to CACHE, and half of the
requests hit a recently rendered user.

Truth: leaks from render_profile (the string kept; the line that allocates it) and
get_profile (the key and the dict's table), 100 KB/s by default.
"""
import sys

import leakcommon as lc

CACHE = {}
FIELDS = ("name", "email", "plan", "country", "language", "timezone", "created", "last_login",
          "visits", "orders", "returns", "rating", "referrer", "segment", "score", "flags",
          "quota", "used", "tier", "region", "team", "role", "locale", "theme", "avatar",
          "status", "notes", "source")


def render_profile(user_id):
    rows = "".join("<tr><td>%s</td><td>%d</td></tr>" % (f, (user_id * 31 + i) % 99991)
                   for i, f in enumerate(FIELDS))
    return "<div class='profile' id='u%d'><table>%s</table></div>" % (user_id, rows)


def get_profile(user_id):
    key = "profile:%d" % user_id
    html = CACHE.get(key)
    if html is None:
        html = render_profile(user_id)
        CACHE[key] = html
        return html, True
    return html, False


def main():
    sc = lc.Scenario("dict_cache", "unbounded dict used as a cache", leaking=True,
                     functions=["render_profile", "get_profile"], rate=100 * lc.KB)
    base = lc.block_cost(sys.getsizeof(CACHE))
    state = {"next": 1, "req": 0}

    def tick(sc, now):
        while sc.behind(now):
            state["req"] += 1
            if state["req"] % 2 == 0 and state["next"] > 100:
                get_profile(state["next"] - 1 - state["req"] % 100)     # a hit
                continue
            uid = state["next"]
            state["next"] += 1
            html, new = get_profile(uid)
            if new:
                sc.kept += lc.obj_cost(html) + lc.obj_cost("profile:%d" % uid)

    sc.run(tick, held=lambda: lc.block_cost(sys.getsizeof(CACHE)) - base)


if __name__ == "__main__":
    main()
