#!/bin/sh
# Installs the Debian packages pymemspy's build, tests and demo need (when root), or prints the
# apt-get line to run. Only what is missing is installed.
set -eu
PKGS="make gcc clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev pkg-config libcriterion-dev
python3 python3.11-dbg clang-format procps util-linux tmux libncurses-dev libcap2-bin
libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "pymemspy needs these Debian packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null
