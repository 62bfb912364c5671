# fuzz.mk - libFuzzer targets (clang, ASan + UBSan). Included by the Makefile.
#   make fuzz                      build build-fuzz/fuzz_policy
#   make fuzz-run                  fuzz it for FUZZ_SECONDS (60) on its corpus
#   make fuzz-run FUZZ_SECONDS=600 FUZZ_ARGS=-jobs=4
# Crashes are written to fuzz/crashes/ (not committed). docs/fuzzing.md.

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
FUZZ_CFLAGS  := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
                -D_GNU_SOURCE -Iinclude -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

FUZZ_TARGETS := $(FUZZ_BUILD)/fuzz_policy

.PHONY: fuzz fuzz-deps fuzz-run fuzz-clean
fuzz: $(FUZZ_TARGETS)

fuzz-deps:
	@scripts/deps.sh fuzz

# policy.c needs no OpenSSL: the target links only the matcher and sd_err.
$(FUZZ_BUILD)/fuzz_policy: fuzz/fuzz_policy.c src/policy.c src/err.c include/sd/policy.h include/sd/err.h \
                       | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_policy.c src/policy.c src/err.c

fuzz-run: fuzz
	@mkdir -p fuzz/crashes $(FUZZ_BUILD)/corpus/policy
	$(FUZZ_BUILD)/fuzz_policy -max_total_time=$(FUZZ_SECONDS) -max_len=4200 \
	  -timeout=10 -print_final_stats=1 -artifact_prefix=fuzz/crashes/policy- \
	  $(FUZZ_ARGS) $(FUZZ_BUILD)/corpus/policy fuzz/corpus/policy

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
