# bench/bench.mk - `make bench`: steeldoor against nginx, HAProxy and stunnel
# (Debian's packages, one worker each, the same mTLS setup) on loopback; in
# the http phase, steeldoor's HTTP mode against nginx's and HAProxy's; in
# http-apikey and http-jwt, steeldoor's HTTP mode with a second factor against
# itself without; in connect-full, connect-resumed and connect-keepalive, each
# one's client mode (plain TCP in, mutual TLS out to a fixed upstream).
# Included from the Makefile; not part of `make test`. See docs/benchmarks.md.
#   make bench                     the whole comparison (~9 minutes)
#   make bench BENCH_ARGS='--runs 1 --servers steeldoor,nginx'
#   make bench BENCH_ARGS='--phases http'   only the HTTP keep-alive phase
#   make bench BENCH_ARGS='--servers steeldoor --phases http,http-apikey,http-jwt'
#   make bench BENCH_ARGS='--phases connect-full,connect-resumed,connect-keepalive --runs 3'
#   make bench-build               only build bench/loadgen, backend and tlsfloor

BENCH_OUT    := $(BUILD)/bench
BENCH_BINS   := $(BENCH_OUT)/loadgen $(BENCH_OUT)/backend $(BENCH_OUT)/tlsfloor
BENCH_ARGS   ?=

.PHONY: bench bench-build
bench-build: $(BENCH_BINS)

# The project's flags (sd_* in the Makefile) with the user's added, as for
# src/; -Wconversion as well (BENCH_WCONV).
BENCH_CC = $(CC) $(SD_ALL_CPPFLAGS) $(SD_ALL_CFLAGS) $(BENCH_WCONV)
BENCH_WCONV := $(SD_WCONV)

$(BENCH_OUT)/loadgen: bench/loadgen.c bench/bench.h
	@mkdir -p $(@D)
	$(BENCH_CC) -o $@ $< $(SD_ALL_LDFLAGS) $(LDLIBS)

$(BENCH_OUT)/tlsfloor: bench/tlsfloor.c
	@mkdir -p $(@D)
	$(BENCH_CC) -o $@ $< $(SD_ALL_LDFLAGS) $(LDLIBS)

$(BENCH_OUT)/backend: bench/backend.c bench/bench.h
	@mkdir -p $(@D)
	$(BENCH_CC) -o $@ $< $(SD_ALL_LDFLAGS)

# Peers that are missing (and cannot be installed when not root) are skipped
# by bench/run.py with a note, so a failing deps.sh does not stop the run.
bench: $(BUILD)/steeldoor $(BENCH_BINS)
	@scripts/deps.sh bench || echo "bench: continuing; missing peers will be skipped"
	$(PYTHON) bench/run.py --steeldoor $(BUILD)/steeldoor --bin-dir $(BENCH_OUT) $(BENCH_ARGS)
