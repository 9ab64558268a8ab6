#!/bin/sh
# make demo: start the example service in the background and look at it from the outside:
# record its memory growth for a while (the leak should come out on top), then dump its stacks.
set -eu
BIN=${1:-./pymemspy}
SECONDS_TO_RECORD=${DEMO_SECONDS:-10}
PY=${PYTHON:-}
for cand in /root/.pyenv/versions/3.12.1/bin/python3.12 /usr/bin/python3.11 python3; do
	[ -n "$PY" ] && break
	command -v "$cand" >/dev/null 2>&1 && PY=$cand
done
"$PY" examples/leaky_service.py 120 > /tmp/pymemspy-demo.out 2>&1 &
TARGET=$!
trap 'kill $TARGET 2>/dev/null || true' EXIT INT TERM
sleep 1
echo "== example service running as pid $TARGET ($PY)"
echo
echo "== $BIN record --pid $TARGET --duration $SECONDS_TO_RECORD"
"$BIN" record --pid "$TARGET" --duration "$SECONDS_TO_RECORD"
echo
echo "== $BIN dump --pid $TARGET"
"$BIN" dump --pid "$TARGET"
