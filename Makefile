# steeldoor - a mutual-TLS gateway.
#   make            build build/steeldoor
#   make run        install what is missing (as root), build, dev PKI, demo
#   make test       build and run every test (unit + integration)
#   make SAN=1 test the same with AddressSanitizer + UndefinedBehaviorSanitizer
#   make CC=clang   build with clang (warnings are errors with both compilers)
#   make fuzz       build the libFuzzer targets; make fuzz-run runs them a while

CC      ?= cc
PKGS    := libssl libcrypto yaml-0.1 jansson
SAN     ?= 0
BUILD   ?= $(if $(filter 1,$(SAN)),build-san,build)
PYTHON  := /usr/bin/python3

# The user's CFLAGS, CPPFLAGS and LDFLAGS (`make CFLAGS=-O0`) are added to
# the project's flags, never instead of them: -Iinclude, the warnings and
# the hardening live in SD_* variables that every rule applies.
CFLAGS  ?= $(if $(filter 1,$(SAN)),-O1,-O2) -g

# $(call sd_cc_option,FLAG): FLAG when $(CC) accepts it (with -Werror, so a
# flag it would only warn about counts as unsupported), else nothing.
sd_cc_option = $(shell $(CC) -Werror $(1) -x c -c /dev/null -o /dev/null 2>/dev/null && echo $(1))

SD_CPPFLAGS := -D_GNU_SOURCE -Iinclude $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Warnings for every C file of the project (src, tests, bench, fuzz).
SD_WARN     := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
               -Wformat=2 -Wno-format-nonliteral -fno-strict-aliasing
# Implicit narrowing and sign changes are errors in src/ and tests/unit/:
# a length that silently wraps is how bounded buffers stop being bounded.
SD_WCONV    := -Wconversion -Wsign-conversion
# Hardening (Debian's hardening-wrapper set, checked on the binary by
# scripts/check-hardening.sh): stack protector, stack clash protection,
# CET where the target has it, position-independent code, full RELRO.
SD_HARDEN   := -fstack-protector-strong $(call sd_cc_option,-fstack-clash-protection) \
               $(call sd_cc_option,-fcf-protection) -fPIE
SD_LDHARDEN := -pie -Wl,-z,relro,-z,now
# _FORTIFY_SOURCE needs optimisation: glibc warns without it, and -Werror
# would make that fatal, so it is set only when the last -O of CFLAGS is
# not -O0. Not with the sanitizers either: ASan checks every access itself,
# and the __*_chk variants would bypass its interceptors.
SD_OPT      := $(lastword $(filter -O%,$(CFLAGS)))
SD_FORTIFY  := $(if $(filter 1,$(SAN)),,$(if $(filter-out -O0,$(SD_OPT)),-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2))
ifeq ($(SAN),1)
SD_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

# What the rules use: the project's flags first, the user's after them (a
# user -O0 or -g3 wins), and the project's errors-as-warnings always on.
SD_ALL_CPPFLAGS := $(SD_CPPFLAGS) $(SD_FORTIFY) $(CPPFLAGS)
SD_ALL_CFLAGS   := $(SD_WARN) $(SD_HARDEN) $(SD_SAN) $(CFLAGS)
SD_ALL_LDFLAGS  := $(SD_LDHARDEN) $(SD_SAN) $(LDFLAGS)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lssl -lcrypto -lyaml -ljansson)

SRCS      := $(wildcard src/*.c src/*/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit integration check check-hardening check-includes clean
all: $(BUILD)/steeldoor

# Every .c under src/ and src/*/ (new files included: the wildcards above).
$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(SD_ALL_CPPFLAGS) $(SD_ALL_CFLAGS) $(SD_WCONV) -MMD -MP -c -o $@ $<

$(BUILD)/steeldoor: $(OBJS)
	$(CC) $(SD_ALL_CFLAGS) $(SD_ALL_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SD_ALL_CPPFLAGS) $(SD_ALL_CFLAGS) $(SD_WCONV) -MMD -MP -o $@ $< $(LIB_OBJS) \
	  $(SD_ALL_LDFLAGS) $(LDLIBS) -lcmocka

# The differential test links Debian's http-parser (libhttp-parser-dev), the
# oracle it compares the HTTP parsers with (responses, requests); nothing
# else links it.
$(BUILD)/tests/test_http_diff: LDLIBS += -lhttp_parser
$(BUILD)/tests/test_http_req_diff: LDLIBS += -lhttp_parser

deps:
	@scripts/deps.sh test

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/steeldoor
	STEELDOOR_BIN=$(CURDIR)/$(BUILD)/steeldoor STEELDOOR_SAN=$(SAN) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# Static checks of the build itself: the hardening really reached the
# binary, and the include graph has no cycle and keeps OpenSSL in its place.
check: check-hardening check-includes

check-hardening: $(BUILD)/steeldoor
	@scripts/check-hardening.sh $(if $(SD_FORTIFY),,--no-fortify) $(BUILD)/steeldoor

check-includes:
	@$(PYTHON) scripts/check-includes.py

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

run: 
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh

clean:
	rm -rf build build-san

# ---- steeldoor(1) and make install
# The man page is written by the binary itself (`steeldoor help-man`, a
# hidden command), from the same texts and table of keys as --help, so it
# cannot describe a flag the binary does not have.
#   make install [PREFIX=/usr/local] [DESTDIR=/tmp/stage]
# installs the binary, the man page, the systemd unit (its ExecStart under
# PREFIX), the unit's sysusers.d entry and an example configuration under
# share/doc; never anything in /etc (the unit reads
# /etc/steeldoor/steeldoor.yaml, which is the administrator's).
# `make uninstall` removes exactly those files.
PREFIX  ?= /usr/local
INSTALL ?= install
SD_INST_BIN     = $(DESTDIR)$(PREFIX)/bin/steeldoor
SD_INST_MAN     = $(DESTDIR)$(PREFIX)/share/man/man1/steeldoor.1
SD_INST_UNIT    = $(DESTDIR)$(PREFIX)/lib/systemd/system/steeldoor.service
SD_INST_USERS   = $(DESTDIR)$(PREFIX)/lib/sysusers.d/steeldoor.conf
SD_INST_EXAMPLE = $(DESTDIR)$(PREFIX)/share/doc/steeldoor/steeldoor.yaml

.PHONY: man install uninstall
man: $(BUILD)/steeldoor.1

$(BUILD)/steeldoor.1: $(BUILD)/steeldoor
	$(BUILD)/steeldoor help-man > $@.tmp
	mv $@.tmp $@

# contrib/steeldoor.service names /usr/bin/steeldoor (PREFIX=/usr); the
# copy installed names the binary under this PREFIX. Written on every
# install: PREFIX is not a file make could compare dates with.
install: $(BUILD)/steeldoor $(BUILD)/steeldoor.1
	sed 's|/usr/bin/steeldoor|$(PREFIX)/bin/steeldoor|g' contrib/steeldoor.service \
	  > $(BUILD)/steeldoor.service.tmp
	$(INSTALL) -D -m 0755 $(BUILD)/steeldoor $(SD_INST_BIN)
	$(INSTALL) -D -m 0644 $(BUILD)/steeldoor.1 $(SD_INST_MAN)
	$(INSTALL) -D -m 0644 $(BUILD)/steeldoor.service.tmp $(SD_INST_UNIT)
	$(INSTALL) -D -m 0644 contrib/steeldoor.sysusers $(SD_INST_USERS)
	$(INSTALL) -D -m 0644 contrib/steeldoor.yaml $(SD_INST_EXAMPLE)
	rm -f $(BUILD)/steeldoor.service.tmp

uninstall:
	rm -f $(SD_INST_BIN) $(SD_INST_MAN) $(SD_INST_UNIT) $(SD_INST_USERS) $(SD_INST_EXAMPLE)
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/steeldoor 2>/dev/null

-include $(OBJS:.o=.d) $(UNIT_BINS:=.d)
# make fuzz / make fuzz-run: libFuzzer targets (clang)
-include fuzz/fuzz.mk
# make bench: steeldoor against nginx, HAProxy and stunnel (not part of make test)
-include bench/bench.mk
