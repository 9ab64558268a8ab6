"""warmup_steady: a heavy warm-up, then a steady state (must NOT be flagged).

A service starts by loading its model for 6 s (about 10 MB/s: 4 KiB weight blocks, bytes, and
a vocabulary dict of small objects, 60 MB in all) while already answering requests, then only
answers requests: each one builds temporaries (a 64 KiB scratch buffer, small objects) that
are freed again. Its memory stays flat once the warm-up is over.

Truth: not leaking. The truth file's samples are what the model holds (for information).
"""

import leakcommon as lc

WEIGHTS = []
VOCAB = {}
WARMUP_S = 6.0
BLOCK = 4096


def load_model_shard(shard, nbytes):
    blocks = nbytes * 7 // 10 // BLOCK
    for k in range(blocks):
        WEIGHTS.append(b"%08d" % (shard * 1000 + k) * (BLOCK // 8))
    for k in range(nbytes * 3 // 10 // 150):
        word = "w%d_%d" % (shard, k)
        VOCAB[word] = (len(VOCAB), word.upper())


def predict(n):
    scratch = bytearray(64 * 1024)
    scratch[::4096] = b"x" * 16
    feats = [VOCAB.get("w%d_%d" % (n % 60, k)) for k in range(20)]
    return sum(1 for f in feats if f) + len(WEIGHTS[n % len(WEIGHTS)]) + len(scratch)


def main():
    sc = lc.Scenario("warmup_steady", "a heavy warm-up, then a steady state", leaking=False,
                     functions=[], rate=10 * 1000 * 1000)
    state = {"shard": 0, "n": 0, "model": 0}
    shard_bytes = int(sc.args.rate / 100)           # one shard per 10 ms tick while warming up

    def tick(sc, now):
        if now - sc.t0 < WARMUP_S:
            load_model_shard(state["shard"], shard_bytes)
            state["shard"] += 1
            state["model"] += shard_bytes
        if WEIGHTS:
            for _ in range(5):
                predict(state["n"])
                state["n"] += 1

    sc.run(tick, held=lambda: state["model"])


if __name__ == "__main__":
    main()
