#!/bin/sh
# Fuzzes the record-file reader (recfile_read_buffer, then the report of what it read) with
# libFuzzer under AddressSanitizer and UBSan, for a bounded time.
#     tools/fuzz.sh [SECONDS]      (default 30)
# Builds into build/fuzz (objects, the target, a seed corpus); the corpus the fuzzer grows is
# kept in build/fuzz/corpus between runs; a crash leaves its input in build/fuzz/crash-* and
# makes this script fail. Without libFuzzer (clang's compiler-rt) it says so and exits 0.
set -eu

secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
out=build/fuzz
mkdir -p "$out/obj" "$out/corpus" "$out/seeds"

probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }'
if ! printf '%s\n' "$probe" | "$CLANG" -fsanitize=fuzzer,address -x c - -o "$out/probe" 2>/dev/null; then
	echo "fuzz: $CLANG cannot build libFuzzer targets (-fsanitize=fuzzer): install clang's" \
	     "compiler-rt (Debian: libclang-rt-dev or libclang-common-<N>-dev); skipped" >&2
	exit 0
fi

san='-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer'
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION: the reader skips CRCs, so mutations reach the parsers
cflags="-std=c11 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 -Wall -Wextra \
	-Werror -Wno-missing-field-initializers $(for d in src/*/; do printf ' -I%s' "${d%/}"; done) -Ibpf $san"

# Every module but main and the two that need generated BPF skeletons, in an archive: the link
# takes only what the reader and the report reach (a module that does not build here is left out;
# the link says so if the reader needed it).
rebuild=0
for h in src/*/*.h bpf/*.h tools/fuzz.sh; do
	[ "$h" -nt "$out/libpms.a" ] && rebuild=1 && break
done
objs=
for src in src/*/*.c; do
	name=$(printf '%s' "${src#src/}" | tr / _)
	name=${name%.c}
	case $name in cmd_main | sampling_host | sampling_sampler) continue ;; esac
	obj="$out/obj/$name.o"
	if [ $rebuild = 1 ] || [ ! -e "$obj" ] || [ "$src" -nt "$obj" ]; then
		echo "  CC       $obj"
		"$CLANG" $cflags -fsanitize=fuzzer-no-link -c "$src" -o "$obj" 2>"$out/obj/$name.log" || {
			echo "  SKIP     $src (does not build here: $out/obj/$name.log)"
			rm -f "$obj"
			continue
		}
	fi
	objs="$objs $obj"
done
rm -f "$out/libpms.a"
ar rcs "$out/libpms.a" $objs
echo "  LINK     $out/fuzz_recfile"
"$CLANG" $cflags -fsanitize=fuzzer tests/fuzz/fuzz_recfile.c "$out/libpms.a" -lelf -lz -lm \
	-o "$out/fuzz_recfile"
"$CLANG" $cflags tests/fuzz/gen_corpus.c "$out/libpms.a" -lelf -lz -lm -o "$out/gen_corpus"
"$out/gen_corpus" "$out/seeds"

echo "  FUZZ     recfile for ${secs}s"
"$out/fuzz_recfile" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" "$out/seeds" \
	>"$out/fuzz.log" 2>&1 || {
	tail -n 60 "$out/fuzz.log" >&2
	echo "fuzz: the record-file reader failed on an input: see $out/fuzz.log and $out/crash-*" >&2
	exit 1
}
grep -E '^stat::number_of_executed_units|^#[0-9]+ +DONE' "$out/fuzz.log" | sed 's/^/  /' || true
