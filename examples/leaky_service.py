"""A small example service for `make demo`: a worker pool handles fake requests; one handler
keeps every response in a module-level list (the leak); the others only churn."""
import hashlib
import os
import sys
import threading
import time

SEEN_RESPONSES = []  # the leak: grows by one rendered page per request


class Renderer:
    def render(self, request_id):
        body = "".join("<li>%d</li>" % (request_id * i) for i in range(40))
        return ("<html><body><ul>%s</ul></body></html>" % body).encode() * 4


class AuditLog:
    """Keeps every response it ever saw: nobody reads it back."""

    def remember(self, response):
        SEEN_RESPONSES.append(bytes(response) + b" " * 3000)


def handle_checkout(request_id, renderer, audit):
    page = renderer.render(request_id)
    audit.remember(page)
    return len(page)


def handle_search(request_id):
    words = ["w%d" % (request_id * i % 97) for i in range(200)]
    index = {w: hashlib.md5(w.encode()).hexdigest() for w in words}
    return len(index)


def worker(stop):
    renderer, audit = Renderer(), AuditLog()
    request_id = 0
    while not stop.is_set():
        request_id += 1
        handle_search(request_id)
        if request_id % 4 == 0:
            handle_checkout(request_id, renderer, audit)
        time.sleep(0.002)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(stop,), name="worker-%d" % i)
               for i in range(2)]
    for t in threads:
        t.start()
    print("leaky_service pid %d" % os.getpid(), flush=True)
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
