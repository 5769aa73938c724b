# ckpt: `make` builds into build/, `make check` runs every test, `make demo`
# shows start -> checkpoint -> kill -> restart. Both install missing Debian
# packages first when run as root (see tests/deps.sh).

VERSION := 0.1.0
CC ?= gcc
BUILD ?= build
PREFIX ?= /usr/local
SAN ?=

WARN := -Wall -Wextra -Werror
CFLAGS_COMMON := -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -DCKPT_VERSION=\"$(VERSION)\" -Isrc
CFLAGS_SAN := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer,)

# Source sets: every .c in a folder belongs to its component.
COMMON_SRCS := $(wildcard src/common/*.c)
IMAGE_SRCS := $(wildcard src/image/*.c)
CLI_SRCS := $(wildcard src/cli/*.c src/coord/*.c src/gpu/*.c)
AGENT_SRCS := $(wildcard src/agent/*.c)
PREPARE_SRCS := $(wildcard src/restore/*.c)
FINAL_SRCS := $(wildcard src/restore/final/*.c)

CKPT := $(BUILD)/bin/ckpt
AGENT := $(BUILD)/lib/ckpt/libckpt-agent.so
RESTORE := $(BUILD)/lib/ckpt/ckpt-restore
FINAL_BIN := $(BUILD)/obj/final.bin

TEST_PROG_SRCS := $(wildcard tests/progs/*.c)
TEST_PROGS := $(patsubst tests/progs/%.c,$(BUILD)/tests/%,$(TEST_PROG_SRCS))
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNITS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRCS))
# A stand-in for NVIDIA's libcuda.so.1 (tests/integration/test_gpu.py).
FAKE_CUDA := $(BUILD)/tests/fake-cuda/libcuda.so.1

obj = $(patsubst %.c,$(BUILD)/obj/$(1)/%.o,$(2))

.PHONY: all clean check check-unit check-integration check-gpu demo deps install fuzz fuzz-smoke bench sanitize
all: $(CKPT) $(AGENT) $(RESTORE) $(TEST_PROGS) $(UNITS) $(FAKE_CUDA)

# The command line tool and coordinator.
$(CKPT): $(call obj,cli,$(CLI_SRCS) $(IMAGE_SRCS) $(COMMON_SRCS))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_SAN) -o $@ $^ -lzstd -ldl

$(BUILD)/obj/cli/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_SAN) -c -o $@ $<

# The injected agent: position independent, no sanitizers (it lives inside
# the user's program).
$(AGENT): $(call obj,agent,$(AGENT_SRCS) src/image/writer.c src/image/record.c src/image/format_check.c $(COMMON_SRCS)) src/agent/exports.map
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(filter %.o,$^) -lpthread -lzstd -Wl,-z,now -Wl,--version-script=src/agent/exports.map

$(BUILD)/obj/agent/%.o: %.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -fPIC -fvisibility=hidden -fno-omit-frame-pointer -c -o $@ $<

# The restorer's freestanding final stage: a flat, position-independent
# blob with no relocations, copied into a hole of the restored address space.
FINAL_CFLAGS := -std=gnu11 -O2 $(WARN) -Isrc -fpie -ffreestanding -fno-builtin -nostdlib \
	-fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fcf-protection=none -fno-jump-tables -mgeneral-regs-only -fvisibility=hidden
$(BUILD)/obj/final/%.o: %.c $(wildcard src/restore/final/*.h src/image/*.h src/restore/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -c -o $@ $<
$(BUILD)/obj/final.elf: $(call obj,final,$(FINAL_SRCS)) src/restore/final/blob.ld
	$(LD) --no-warn-rwx-segments -T src/restore/final/blob.ld -o $@ $(call obj,final,$(FINAL_SRCS))
	@if readelf -r $(call obj,final,$(FINAL_SRCS)) | grep -E 'R_X86_64_(64|32S?) ' ; then \
		echo "final stage: absolute relocations are not allowed (blob must run anywhere)"; exit 1; fi
$(FINAL_BIN): $(BUILD)/obj/final.elf
	objcopy -O binary -j .blob $< $@

$(RESTORE): $(call obj,restore,$(PREPARE_SRCS) $(IMAGE_SRCS) $(COMMON_SRCS)) $(BUILD)/obj/restore/blob.o
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ -lzstd -lpthread
$(BUILD)/obj/restore/%.o: %.c $(wildcard src/*/*.h src/restore/final/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -c -o $@ $<
$(BUILD)/obj/restore/blob.o: src/restore/blob.S $(FINAL_BIN)
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ -I$(BUILD)/obj $<

# Test programs and unit tests.
$(BUILD)/tests/%: tests/progs/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -D_GNU_SOURCE -mavx2 -o $@ $< -lpthread -lm -ldl
$(FAKE_CUDA): tests/gpu/fake_libcuda.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -shared -fPIC -fvisibility=hidden \
		-Wl,-soname,libcuda.so.1 -o $@ $<
$(BUILD)/tests/unit/%: tests/unit/%.c $(IMAGE_SRCS) $(COMMON_SRCS) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(CFLAGS_SAN) -o $@ $< $(IMAGE_SRCS) $(COMMON_SRCS) $(wildcard src/coord/proto.c) -lzstd

# Fuzzing the image reader (clang + libFuzzer). `make fuzz` runs for
# FUZZ_SECONDS; `make fuzz-smoke` is the short run CI does. New inputs go to
# build-fuzz/corpus, the seeds (tests/fuzz/corpus/image) are only read.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_IMAGE := build-fuzz/fuzz_image
$(FUZZ_IMAGE): tests/fuzz/fuzz_image.c $(IMAGE_SRCS) $(COMMON_SRCS) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g $(WARN) -D_GNU_SOURCE -Isrc -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
		-o $@ tests/fuzz/fuzz_image.c $(IMAGE_SRCS) $(COMMON_SRCS) -lzstd

# The control-socket line parser (src/coord/proto.c), which reads what any
# local process of the same user sends to ctl.sock.
FUZZ_PROTO := build-fuzz/fuzz_proto
$(FUZZ_PROTO): tests/fuzz/fuzz_proto.c src/coord/proto.c src/coord/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g $(WARN) -D_GNU_SOURCE -Isrc -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
		-o $@ tests/fuzz/fuzz_proto.c src/coord/proto.c

# Seeds written by the current writer join the committed ones, so that a
# format change does not leave the fuzzer stuck at the first checks.
fuzz: $(FUZZ_IMAGE) $(FUZZ_PROTO) $(BUILD)/tests/unit/test_image
	@mkdir -p build-fuzz/corpus/image build-fuzz/corpus/proto build-fuzz/seed-image
	$(BUILD)/tests/unit/test_image --write-seed build-fuzz/seed-image
	$(FUZZ_IMAGE) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
		-artifact_prefix=build-fuzz/ build-fuzz/corpus/image build-fuzz/seed-image \
		tests/fuzz/corpus/image
	$(FUZZ_PROTO) -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
		-artifact_prefix=build-fuzz/proto- build-fuzz/corpus/proto tests/fuzz/corpus/proto

# CI's bounded run: FUZZ_SMOKE_SECONDS per target (make check runs it).
FUZZ_SMOKE_SECONDS ?= 10
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)

deps:
	@tests/deps.sh

check: deps
	$(MAKE) all
	$(MAKE) check-unit
	$(MAKE) fuzz-smoke
	$(MAKE) check-integration

check-unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

check-integration: all
	/usr/bin/python3 -m pytest -v -x tests/integration $(PYTEST_ARGS)

# Checks that need a real NVIDIA GPU and PyTorch (docs/gpu.md). They use
# the build as it is (build/ may be copied to a GPU machine without a
# compiler, pytest or a package manager: no dependency on all or deps) and
# skip, saying why, without a GPU. GPU_PYTHON is the interpreter with torch.
GPU_PYTHON ?= python3
check-gpu:
	CKPT_GPU_PYTHON=$(GPU_PYTHON) $(GPU_PYTHON) tests/gpu_real/check_gpu.py

sanitize:
	$(MAKE) BUILD=build-san SAN=address,undefined build-san/bin/ckpt $(patsubst $(BUILD)/%,build-san/%,$(UNITS))

demo: deps
	$(MAKE) all
	@tests/demo.sh

# The benchmark (bench/README.md): `make bench`, options in BENCH_ARGS.
$(BUILD)/bench/hold: bench/hold.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 $(WARN) -o $@ $<

$(BUILD)/bench/memcost: bench/memcost.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 $(WARN) -o $@ $<

bench: all $(BUILD)/bench/hold $(BUILD)/bench/memcost
	/usr/bin/python3 bench/bench.py $(BENCH_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/ckpt
	install -m 0755 $(CKPT) $(DESTDIR)$(PREFIX)/bin/ckpt
	install -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/lib/ckpt/
	install -m 0755 $(RESTORE) $(DESTDIR)$(PREFIX)/lib/ckpt/

clean:
	rm -rf $(BUILD) build-san build-fuzz
