#!/bin/sh
# What the tests and the demo need from the host and not from packages: tracefs mounted (the
# event sources attach to tracepoints). pymemspy doctor does the same and says so.
set -u
if [ ! -d /sys/kernel/tracing/events ] && [ "$(id -u)" = 0 ]; then
	mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null && echo "mounted tracefs at /sys/kernel/tracing" >&2
fi
exit 0
