# fuzz.mk - libFuzzer targets (clang, ASan + UBSan). Included by the Makefile.
#   make fuzz                          build every target in build-fuzz/
#   make fuzz-run                      fuzz each for FUZZ_SECONDS (60) on its corpus
#   make fuzz-run FUZZ_SECONDS=600 FUZZ_RUN="log pp2" FUZZ_ARGS=-jobs=4
# One target per parser of outside input, fuzz/fuzz_NAME.c, seeds in
# fuzz/corpus/NAME/. Crashes go to fuzz/crashes/ (not committed). See
# docs/fuzzing.md.

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
FUZZ_NAMES   := policy peer sni yaml log pp2 http_resp http_req http_chunked http_ident \
                jwt jwks apikeys format
FUZZ_RUN     ?= $(FUZZ_NAMES)
# The project's warnings (sd_* in the Makefile), -Wconversion included;
# no _FORTIFY_SOURCE (ASan checks every access itself).
FUZZ_CFLAGS  := $(SD_WARN) $(SD_WCONV) $(SD_CPPFLAGS) -g -O1 -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -lyaml) \
                -ljansson

# Every library source (all of src/ but main.c, new files included) is
# compiled once with coverage instrumentation; each target links them all,
# so a target reaches the code exactly as the binary runs it.
FUZZ_LIB_OBJS := $(filter-out src/main.c,$(SRCS))
FUZZ_LIB_OBJS := $(FUZZ_LIB_OBJS:src/%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_TARGETS  := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

# Longest input per target: a URI rule and name (policy), a certificate
# (peer), a ClientHello (sni), a config file (yaml), fields of a log line
# (log), the values of a PROXY v2 header before repetition (pp2).
FUZZ_MAXLEN_policy := 4200
FUZZ_MAXLEN_peer   := 16384
FUZZ_MAXLEN_sni    := 16384
FUZZ_MAXLEN_yaml   := 16384
FUZZ_MAXLEN_log    := 12000
FUZZ_MAXLEN_pp2    := 8192
FUZZ_MAXLEN_http_req := 40000
FUZZ_MAXLEN_http_ident := 16384
FUZZ_MAXLEN_http_resp := 40000
FUZZ_MAXLEN_jwt := 9000
FUZZ_MAXLEN_jwks := 16384
FUZZ_MAXLEN_apikeys := 16384
FUZZ_MAXLEN_format := 16384

.PHONY: fuzz fuzz-deps fuzz-run fuzz-clean
# Built by pattern rules only: without this, make would delete them as
# intermediate files after each link.
.SECONDARY: $(FUZZ_LIB_OBJS)
fuzz: $(FUZZ_TARGETS)

fuzz-deps:
	@scripts/deps.sh fuzz

$(FUZZ_BUILD)/obj/%.o: src/%.c | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB_OBJS) | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ $< $(FUZZ_LIB_OBJS) $(FUZZ_LIBS)

# Each target in turn, bounded by FUZZ_SECONDS (and a 10 s limit per input);
# the first crash stops the run with its input in fuzz/crashes/NAME-*.
define fuzz_run_one
	@mkdir -p $(FUZZ_BUILD)/corpus/$(1) fuzz/crashes
	@echo "== fuzz_$(1): $(FUZZ_SECONDS) s"
	$(FUZZ_BUILD)/fuzz_$(1) -max_total_time=$(FUZZ_SECONDS) -max_len=$(or $(FUZZ_MAXLEN_$(1)),4096) \
	  -timeout=10 -print_final_stats=1 -artifact_prefix=fuzz/crashes/$(1)- \
	  $(FUZZ_ARGS) $(FUZZ_BUILD)/corpus/$(1) fuzz/corpus/$(1)

endef

fuzz-run: $(FUZZ_RUN:%=$(FUZZ_BUILD)/fuzz_%)
	$(foreach t,$(FUZZ_RUN),$(call fuzz_run_one,$(t)))

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_TARGETS:=.d)
