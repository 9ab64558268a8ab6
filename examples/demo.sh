#!/bin/sh
# make demo: start the example service in the background and look at it from the outside.
set -eu
BIN=${1:-./pymemspy}
PY=${PYTHON:-}
for cand in /root/.pyenv/versions/3.12.1/bin/python3.12 /usr/bin/python3.11 python3; do
	[ -n "$PY" ] && break
	command -v "$cand" >/dev/null 2>&1 && PY=$cand
done
"$PY" examples/leaky_service.py 60 > /tmp/pymemspy-demo.out 2>&1 &
TARGET=$!
trap 'kill $TARGET 2>/dev/null || true' EXIT INT TERM
sleep 1
echo "== example service running as pid $TARGET ($PY)"
echo
echo "== $BIN dump --pid $TARGET"
"$BIN" dump --pid "$TARGET"
echo
echo "== $BIN dump --pid $TARGET --lock --json (first thread)"
"$BIN" dump --pid "$TARGET" --lock --json | "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
print(json.dumps(doc["threads"][0], indent=2))'
