# steeldoor - a mutual-TLS gateway.
#   make            build build/steeldoor
#   make run        install what is missing (as root), build, dev PKI, demo
#   make test       build and run every test (unit + integration)
#   make SAN=1 test the same with AddressSanitizer + UndefinedBehaviorSanitizer
#   make CC=clang   build with clang (warnings are errors with both compilers)
#   make fuzz       build the libFuzzer targets; make fuzz-run runs them a while

CC      ?= cc
PKGS    := libssl libcrypto yaml-0.1
SAN     ?= 0
BUILD   ?= $(if $(filter 1,$(SAN)),build-san,build)
PYTHON  := /usr/bin/python3

CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wformat=2 -Wno-format-nonliteral -fno-strict-aliasing \
           -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -lyaml)
ifeq ($(SAN),1)
CFLAGS  += -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

SRCS      := $(wildcard src/*.c src/*/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit integration clean
all: $(BUILD)/steeldoor

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/steeldoor: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS) -lcmocka -ljansson

deps:
	@scripts/deps.sh test

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/steeldoor
	STEELDOOR_BIN=$(CURDIR)/$(BUILD)/steeldoor STEELDOOR_SAN=$(SAN) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

run: 
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

clean:
	rm -rf build build-san

-include $(OBJS:.o=.d)
# make fuzz / make fuzz-run: libFuzzer targets (clang)
-include fuzz/fuzz.mk
# make bench: steeldoor against nginx, HAProxy and stunnel (not part of make test)
-include bench/bench.mk
