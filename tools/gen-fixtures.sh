#!/bin/bash
# Runs every tests/fixtures/*.py with every installed CPython and keeps what each prints, for the
# unit tests to compare our decoders against the interpreters themselves:
#   OUTDIR/<script-stem>/<interp-id>.txt      e.g. build/fixtures/linetable/3.11.2-debian-dbg.txt
#
# usage: tools/gen-fixtures.sh OUTDIR            (FORCE=1 regenerates even up-to-date files)
#
# Interpreters: $PYENV_ROOT/versions/3.{8..14}*/bin/python3.X (id <dir>-pyenv, default PYENV_ROOT
# /root/.pyenv) and /usr/bin/python3.X[d] (id <version>-debian[-dbg]); absent ones are skipped.
# A fixture script gets no arguments, must use only the standard library, writes its fixture to
# stdout and exits 0. Runs are parallel; a file newer than its script, its interpreter and this
# tool is kept, so a second run costs nothing. Files of interpreters no longer installed are
# removed, so OUTDIR always describes this machine.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
outdir=$1
here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
fixtures="$here/../tests/fixtures"
pyenv_root=${PYENV_ROOT:-/root/.pyenv}

# Parallel arrays: interpreter path and id.
pys=()
ids=()
for dir in "$pyenv_root"/versions/3.{8..14}*; do
	[ -d "$dir" ] || continue
	name=${dir##*/}
	minor=$(echo "$name" | cut -d. -f1,2)
	py="$dir/bin/python$minor"
	[ -x "$py" ] || continue
	pys+=("$py")
	ids+=("$name-pyenv")
done
for py in /usr/bin/python3.{8..14} /usr/bin/python3.{8..14}d; do
	[ -x "$py" ] || continue
	# Debian's version is only known to the interpreter (the file name has no micro version).
	ver=$("$py" -I -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') || continue
	case $py in
	*d) ids+=("$ver-debian-dbg") ;;
	*) ids+=("$ver-debian") ;;
	esac
	pys+=("$py")
done

if [ ${#pys[@]} -eq 0 ]; then
	echo "gen-fixtures: no CPython 3.8+ interpreter found; no fixtures written" >&2
	exit 0
fi
echo "gen-fixtures: interpreters: ${ids[*]}" >&2

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT

# Start every (script, interpreter) run that is out of date, then wait for them all.
jobs_pid=()
jobs_out=()
jobs_tmp=()
kept=0
for script in "$fixtures"/*.py; do
	[ -f "$script" ] || continue
	stem=$(basename "$script" .py)
	mkdir -p "$outdir/$stem"
	for i in "${!pys[@]}"; do
		out="$outdir/$stem/${ids[$i]}.txt"
		if [ "${FORCE:-0}" != 1 ] && [ "$out" -nt "$script" ] && [ "$out" -nt "${pys[$i]}" ] &&
			[ "$out" -nt "$self" ]; then
			kept=$((kept + 1))
			continue
		fi
		tmp="$tmpdir/$stem.${ids[$i]}"
		# -I: no user site-packages, no PYTHON* variables, no script directory on sys.path.
		PYTHONHASHSEED=0 timeout 60 "${pys[$i]}" -I "$script" >"$tmp.out" 2>"$tmp.err" &
		jobs_pid+=($!)
		jobs_out+=("$out")
		jobs_tmp+=("$tmp")
	done
	# Drop files of interpreters that are gone.
	for f in "$outdir/$stem"/*.txt; do
		[ -e "$f" ] || continue
		id=$(basename "$f" .txt)
		case " ${ids[*]} " in
		*" $id "*) ;;
		*) rm -f "$f" ;;
		esac
	done
done

failed=0
for j in "${!jobs_pid[@]}"; do
	tmp=${jobs_tmp[$j]}
	if wait "${jobs_pid[$j]}"; then
		# Write-then-rename: a reader never sees half a file, an interrupted run leaves none.
		mv "$tmp.out" "${jobs_out[$j]}"
		if [ -s "$tmp.err" ]; then
			sed "s|^|gen-fixtures: ${jobs_out[$j]}: |" "$tmp.err" >&2
		fi
	else
		rc=$?
		echo "gen-fixtures: ${jobs_out[$j]}: fixture script failed (exit $rc):" >&2
		sed 's/^/    /' "$tmp.err" >&2
		rm -f "${jobs_out[$j]}"
		failed=1
	fi
done
echo "gen-fixtures: ${#jobs_pid[@]} written, $kept up to date, in $outdir" >&2
exit $failed
