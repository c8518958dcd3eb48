# clipdex - build, test, bench, install.
#
# Knobs (override on the command line):
#   make CC=clang                     another compiler
#   make OPT=-O0                      optimisation/debug flags
#   make SANITIZER=address            or undefined, or address,undefined
#   make PREFIX=/opt/clipdex install  (DESTDIR is honoured)
#
# Layout: each module directory (common store encoder indexer daemon client)
# builds into one static archive $(BUILD)/libcdx_<module>.a from all of its
# .c/.cpp files except *_main.c.  A test tests/<module>_<name>.c links the
# archives of <module> and of what it depends on (DEPS_<module> below).
# Programs are the *_main.c files.

CC       ?= cc
CXX      ?= c++
OPT      ?= -O2 -g
SANITIZER ?=
PREFIX   ?= /usr/local
DESTDIR  ?=

ifeq ($(SANITIZER),)
BUILD    ?= build
SANFLAGS :=
else
BUILD    ?= build-$(subst $(comma),-,$(SANITIZER))
SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
comma := ,

WARN     := -Wall -Wextra -Werror
CPPFLAGS += -I. -MMD -MP -D_GNU_SOURCE
CFLAGS   += -std=c11 $(WARN) $(OPT) $(SANFLAGS) -fPIC -pthread
CXXFLAGS += -std=c++17 $(WARN) $(OPT) $(SANFLAGS) -fPIC -pthread
LDFLAGS  += $(SANFLAGS) -pthread
# libfaiss.a is static and C++: it needs OpenBLAS, libgomp and libstdc++.
LDLIBS   += -lfaiss -llmdb -lturbojpeg -lspng -lexif -lcjson -lxxhash \
            -lopenblas -lgomp -lstdc++ -lz -lm

MODULES  := common store encoder indexer daemon client
# Module -> archives it links, most dependent first.
DEPS_common  := common
DEPS_store   := store common
DEPS_encoder := encoder common
DEPS_indexer := indexer encoder store common
DEPS_daemon  := daemon indexer encoder store common
DEPS_client  := client daemon indexer encoder store common
DEPS_bench   := $(DEPS_client)
libs_for = $(foreach m,$(DEPS_$(1)),$(BUILD)/libcdx_$(m).a)

mod_srcs = $(filter-out %_main.c,$(wildcard $(1)/*.c)) $(wildcard $(1)/*.cpp)
mod_objs = $(patsubst %,$(BUILD)/%.o,$(basename $(call mod_srcs,$(1))))
ALL_LIBS := $(foreach m,$(MODULES),$(BUILD)/libcdx_$(m).a)

TEST_SRCS := $(wildcard tests/*_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCHES   := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))
# Programs: <module>/<name>_main.c -> $(BUILD)/<name>
PROG_SRCS := $(foreach m,$(MODULES),$(wildcard $(m)/*_main.c))
PROGS     := $(foreach s,$(PROG_SRCS),$(BUILD)/$(patsubst %_main.c,%,$(notdir $(s))))

.PHONY: all test check check-asan bench fuzz install clean deps tests
all: $(ALL_LIBS) $(PROGS) $(TESTS) $(BENCHES)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

define module_rules
$(BUILD)/libcdx_$(1).a: $(call mod_objs,$(1))
	@mkdir -p $$(@D)
	rm -f $$@
	$$(if $$^,ar rcs $$@ $$^,ar rcs $$@)
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

define prog_rules
$(BUILD)/$(patsubst %_main.c,%,$(notdir $(1))): $(BUILD)/$(basename $(1)).o $(call libs_for,$(patsubst %/,%,$(dir $(1))))
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(PROG_SRCS),$(eval $(call prog_rules,$(s))))

.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/tests/%: $(BUILD)/tests/%.o $$(call libs_for,$$(firstword $$(subst _, ,$$*)))
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(call libs_for,bench)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	tools/deps.sh

# With T=pattern only the matching suites are built (and run).
SEL_TESTS := $(if $(T),$(foreach t,$(TESTS),$(if $(findstring $(T),$(notdir $(t))),$(t))),$(TESTS) $(PROGS))
tests: $(SEL_TESTS)

# Installs what is missing, builds, runs every test.  T=pattern runs a subset.
test: deps
	$(MAKE) tests
	BUILD=$(BUILD) tests/run.sh $(T)

check: test

check-asan:
	$(MAKE) test SANITIZER=address,undefined

bench: deps
	tools/deps.sh --bench
	$(MAKE) $(BENCHES) $(PROGS)
	BUILD=$(BUILD) bench/run.sh $(B)

install: $(PROGS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
