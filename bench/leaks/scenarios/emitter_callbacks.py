"""emitter_callbacks: callbacks registered on a long-lived emitter and never removed.

Every session subscribes one of its bound methods to the application-wide event bus (BUS, a
module-level Emitter) to hear about configuration changes, and nothing ever unsubscribes it: the
bus's listener list keeps every session alive, each with its 2 KB scratch buffer (a bytearray:
memory of its own). A config change is emitted every 2 s and reaches every session ever opened.

Truth: leaks from Session.__init__ (the instance and its buffer; the line that allocates the
buffer), open_session (the bound method) and Emitter.on (the listener list), 100 KB/s by
default.
"""
import sys

import leakcommon as lc


class Emitter:
    def __init__(self):
        self._listeners = {}

    def on(self, event, callback):
        self._listeners.setdefault(event, []).append(callback)

    def off(self, event, callback):
        self._listeners.get(event, []).remove(callback)

    def emit(self, event, *args):
        for cb in self._listeners.get(event, ()):
            cb(*args)


BUS = Emitter()


class Session:
    def __init__(self, sid):
        self.sid = sid
        self.cfg = None
        self.scratch = bytearray(2048)

    def on_config_change(self, cfg):
        self.cfg = cfg

    def close(self):                        # what nobody calls
        BUS.off("config", self.on_config_change)


def open_session(sid, bus=BUS):
    s = Session(sid)
    bus.on("config", s.on_config_change)
    return s


def main():
    sc = lc.Scenario("emitter_callbacks",
                     "callbacks registered on a long-lived emitter, never removed",
                     leaking=True, functions=["Session.__init__", "open_session", "Emitter.on"],
                     rate=100 * lc.KB)
    # a session and the bound method the bus keeps (the list's growth is counted by held)
    per_session = lc.calibrate(Session) + lc.obj_cost(Session(-1).on_config_change)
    state = {"sid": 0, "emit": None, "cfg": 0}

    def listeners():
        return lc.block_cost(sys.getsizeof(BUS._listeners.get("config", [])))

    def tick(sc, now):
        while sc.behind(now):
            open_session(state["sid"])
            state["sid"] += 1
            sc.kept += per_session
        if state["emit"] is None:
            state["emit"] = now + 2.0
        elif now >= state["emit"]:
            state["cfg"] += 1
            BUS.emit("config", state["cfg"])
            state["emit"] += 2.0

    sc.run(tick, held=listeners)


if __name__ == "__main__":
    main()
