# pymemspy build. Outputs go under $(BUILD); `make V=1` shows the commands.
#   make            build ./pymemspy
#   make deps       install the Debian packages the build and tests need (root), or print the line
#   make check      deps, build, unit + end-to-end tests, again under ASan/UBSan, then the
#                   record-file reader's fuzz target for 30 s
#   make demo       profile the bundled example service
#   make install    PREFIX=/usr/local DESTDIR=

.DELETE_ON_ERROR:
.SUFFIXES:

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
SAN      ?=

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

ARCH     := x86
# src/ is grouped by pipeline stage (cmd, python, process, sampling, profile, output, util); each
# header sits beside its .c and every group is on the include path.
SRC_DIRS := $(sort $(dir $(wildcard src/*/*.c src/*/*.h)))
SRC_INCS := $(patsubst %/,-I%,$(SRC_DIRS))
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers \
            $(SRC_INCS) -Ibpf -I$(BUILD) -MMD -MP
LDLIBS   += -lbpf -lelf -lz -lm -lncursesw
ifneq ($(SAN),)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -Wall -Werror -I$(BUILD) -Ibpf

SRCS      := $(wildcard src/*/*.c)
OBJS      := $(patsubst src/%.c,$(BUILD)/src/%.o,$(SRCS))
LIB_OBJS  := $(filter-out $(BUILD)/src/cmd/main.o,$(OBJS))
BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS     := $(patsubst bpf/%.bpf.c,$(BUILD)/%.skel.h,$(BPF_SRCS))
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_OBJS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%.o,$(TEST_SRCS))
BIN       := $(BUILD)/pymemspy

.PHONY: all deps check test unit e2e sanitize demo install clean format format-check layouts bench \
	bench-leaks bench-leaks-fast
# generated headers and objects are kept, not removed as intermediates
.SECONDARY: $(SKELS) $(BPF_OBJS) $(BUILD)/vmlinux.h
# ./pymemspy points at the default build; other build dirs (BUILD=...) leave it alone
ifeq ($(BUILD),build)
all: pymemspy
else
all: $(BIN)
endif

pymemspy: $(BIN)
	$(Q)ln -sf $(BIN) $@

# vmlinux.h comes from the running kernel's BTF: CO-RE relocates field offsets at load time, so
# the header only has to describe *a* kernel with these types; generating it avoids committing
# 3 MB of generated text. Every machine we run on needs BTF anyway (CO-RE needs it at load time).
$(BUILD)/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)test -r /sys/kernel/btf/vmlinux || { echo "no /sys/kernel/btf/vmlinux: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)" >&2; exit 1; }
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(BUILD)/vmlinux.h $(wildcard bpf/*.h)
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*)_bpf > $@

$(BUILD)/src/%.o: src/%.c $(SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/pymemspy: $(OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%.o: tests/unit/%.c $(SKELS)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -Itests/unit -c $< -o $@

$(BUILD)/unit-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcriterion -o $@

deps:
	$(Q)tools/deps.sh

# Unit tests read fixtures that each installed interpreter writes about itself.
unit: $(BUILD)/unit-tests
	$(Q)tools/gen-fixtures.sh $(BUILD)/fixtures
	$(Q)PMS_FIXTURES=$(BUILD)/fixtures PMS_BIN=$(abspath $(BIN)) $(BUILD)/unit-tests --jobs 2

e2e: $(BIN)
	$(Q)tools/host-setup.sh
	$(Q)PMS_BIN=$(abspath $(BIN)) python3 tests/e2e/run.py $(E2E_ARGS)
	$(Q)PMS_BIN=$(abspath $(BIN)) python3 tests/e2e/top.py
	$(Q)PMS_BIN=$(abspath $(BIN)) python3 tests/e2e/census.py

test: unit e2e

# The unit tests and a representative end-to-end subset, under AddressSanitizer and UBSan.
sanitize:
	$(Q)$(MAKE) --no-print-directory BUILD=build/san SAN=1 build/san/unit-tests build/san/pymemspy
	$(Q)tools/gen-fixtures.sh build/fixtures
	$(Q)ASAN_OPTIONS=detect_leaks=1 PMS_FIXTURES=build/fixtures PMS_BIN=$(abspath build/san/pymemspy) build/san/unit-tests --jobs 2
	$(Q)ASAN_OPTIONS=detect_leaks=1 PMS_BIN=$(abspath build/san/pymemspy) python3 tests/e2e/run.py --subset

check: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(MAKE) --no-print-directory format-check
	$(Q)$(MAKE) --no-print-directory test
	$(Q)$(MAKE) --no-print-directory bench-leaks-fast
	$(Q)$(MAKE) --no-print-directory sanitize
	$(Q)tools/fuzz.sh 30

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/host-setup.sh
	$(Q)examples/demo.sh ./pymemspy

# Regenerates src/python/pylayout_table.c from the installed interpreters' headers (output committed).
layouts:
	$(Q)tools/gen-layouts.sh > src/python/pylayout_table.c.new && mv src/python/pylayout_table.c.new src/python/pylayout_table.c

# Programs that print figures (not tests): the target's throughput alone vs recorded, the
# profiler's own cost, and how much of a leak's growth is charged to the leaking function.
bench: all
	$(Q)tools/host-setup.sh
	$(Q)bench/overhead
	$(Q)bench/attribution

# The leak scenarios (bench/leaks/README.md): 14 patterns, a table of verdicts per event source,
# about 8 min per source.
LEAK_EVENTS ?= growth,malloc,survivors
bench-leaks: $(BIN)
	$(Q)tools/host-setup.sh
	$(Q)bench/leaks/run --events $(LEAK_EVENTS) --pymemspy $(BIN)

# Two of them as a test (about 50 s): exits 1 when a verdict is wrong.
bench-leaks-fast: $(BIN)
	$(Q)tools/host-setup.sh
	$(Q)bench/leaks/run --fast --pymemspy $(BIN)

FORMAT_FILES = $(wildcard src/*/*.c src/*/*.h bpf/*.c bpf/*.h tests/unit/*.c tests/fuzz/*.c tools/*.c)
format:
	$(Q)clang-format -i $(FORMAT_FILES)

format-check:
	$(call msg,FORMAT,check)
	$(Q)clang-format --dry-run --Werror $(FORMAT_FILES)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pymemspy
	install -m 0644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	rm -rf build pymemspy

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d)
