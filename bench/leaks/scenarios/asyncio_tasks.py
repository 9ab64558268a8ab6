"""asyncio_tasks: asyncio tasks created and never awaited.

An asyncio server starts a watcher task per connection (fire and forget: create_task, kept in a
module-level set as the asyncio documentation advises, so it is not garbage collected), meant
to end when the connection closes. The close event is never set, nobody awaits or cancels the
task: every watcher stays pending for ever, with its coroutine frame and its 2 KB read buffer
(a bytearray: memory of its own).

Truth: leaks from watch_connection (the read buffer, allocated when the task first runs; the
line that allocates it) and handle_connection (the task, the coroutine, the event), and from the
asyncio helpers that allocate the rest of what a pending task holds: Event.__init__ (its
waiters deque), Event.wait (the waiter future), BaseEventLoop.create_task and _call_soon,
Handle.__init__ and WeakSet.add (the loop's set of all tasks). 100 KB/s by default, about
4.3 KB per connection.
"""
import asyncio
import sys
import time

import leakcommon as lc

BACKGROUND = set()


async def watch_connection(conn_id, closed):
    buf = bytearray(2048)
    await closed.wait()
    return len(buf) + conn_id


def handle_connection(conn_id, tasks=BACKGROUND):
    closed = asyncio.Event()
    task = asyncio.get_running_loop().create_task(watch_connection(conn_id, closed))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def calibrate_one(n):
    """What one connection keeps, measured on n connections held in a throwaway set (the
    first step of each task, which allocates the buffer, runs at the next loop iteration)."""
    scratch = set()
    before = lc.trace_begin()
    try:
        for i in range(n):
            handle_connection(i, scratch)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        total = lc.trace_end(before)
    total -= lc.block_cost(sys.getsizeof(scratch))       # the set: counted apart (held)
    for t in list(scratch):
        t.cancel()
    await asyncio.sleep(0)
    return total / n


async def serve(sc, per_conn):
    base = lc.block_cost(sys.getsizeof(BACKGROUND))
    sc.begin(held=lambda: lc.block_cost(sys.getsizeof(BACKGROUND)) - base)
    conn = 0
    period = 0.01
    nxt = sc.t0
    while True:
        now = time.monotonic()
        if not sc.keep_going(now):
            break
        while sc.behind(now):
            handle_connection(conn)
            conn += 1
            sc.kept += per_conn
        nxt += period
        await asyncio.sleep(max(0.0, nxt - time.monotonic()))
    sc.end()


def main():
    sc = lc.Scenario("asyncio_tasks", "asyncio tasks created and never awaited", leaking=True,
                     functions=["watch_connection", "handle_connection", "Event.__init__",
                                "Event.wait", "BaseEventLoop.create_task",
                                "BaseEventLoop._call_soon", "Handle.__init__", "WeakSet.add"],
                     rate=100 * lc.KB)
    # measured on a loop of its own in a forked child: nothing of it stays in this process
    per_conn = lc.in_child(lambda: asyncio.run(calibrate_one(2000)))
    asyncio.run(serve(sc, per_conn))


if __name__ == "__main__":
    main()
