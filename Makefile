# clipdex - build, test, bench, install.
#
# Knobs (override on the command line):
#   make CC=clang                     another compiler
#   make OPT=-O0                      optimisation/debug flags
#   make SANITIZER=address            or undefined, or address,undefined
#   make PREFIX=/opt/clipdex install  (DESTDIR is honoured)
#
# Layout: each module directory (common store encoder dupes indexer cluster
# daemon client cli) builds into one static archive $(BUILD)/libcdx_<module>.a from
# all of its .c/.cpp files except *_main.c.  A test tests/<module>_<name>.c links
# the archives of <module> and of what it depends on (DEPS_<module> below,
# or DEPS_test_<module>_<name> where a test needs more).  Programs are the
# *_main.c files; <module>/<name>_main.c links DEPS_<module>.

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
# The image formats beyond JPEG and PNG (encoder/image_*.c): libheif,
# libwebp(+demux), libtiff, giflib, libraw_r; stb_image is a header.
IMAGE_PKGS := libheif libwebpdemux libwebp libtiff-4 libraw_r
# (libraw_r's -fopenmp is left out: libgomp is linked below, and clang's
# -fopenmp would mean libomp.)
IMAGE_LIBS := $(filter-out -fopenmp,$(shell pkg-config --libs $(IMAGE_PKGS) 2>/dev/null || \
              echo -lheif -lwebpdemux -lwebp -ltiff -lraw_r -llcms2)) -lgif
# Video clips (encoder/video.c): FFmpeg's libraries.
VIDEO_LIBS := $(shell pkg-config --libs libavformat libavcodec libswscale libavutil 2>/dev/null || \
              echo -lavformat -lavcodec -lswscale -lavutil)
LDLIBS   += -lfaiss -llmdb -lturbojpeg -ljpeg -lspng -lexif $(IMAGE_LIBS) $(VIDEO_LIBS) -lcjson -lnng \
            -lmicrohttpd -lnats -lxxhash -lsentencepiece -ldnnl -lopenblas -lgomp -lstdc++ -lz -lm

# The encoder's work between its oneDNN GEMMs shares the calling
# thread's OpenMP team (libgomp, linked above).  clang 14 emits only
# libomp's ABI, so a clang build runs them on one thread (same results).
ENCODER_OMP := $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-fopenmp)

MODULES  := common classify store encoder dupes indexer cluster daemon client cli
# Module -> archives it links, most dependent first.
# classify's zero-shot builder calls the encoder (only programs that use
# it pull that object in); the store tags images with classify.
DEPS_common   := common
DEPS_classify := classify encoder common
DEPS_store    := store classify common
DEPS_encoder  := encoder common
DEPS_dupes    := dupes store classify common
DEPS_indexer  := indexer store classify encoder common
DEPS_cluster  := cluster common
DEPS_daemon   := daemon cluster indexer dupes store classify encoder common
# client: libclipdex's code (nng, cJSON and libnats only); cli: the clipdex
# program, which embeds and tokenizes offline with the encoder.
DEPS_client  := client cluster common
DEPS_cli     := cli client cluster classify encoder common
DEPS_bench   := client daemon cluster indexer dupes store classify encoder common
libs_for = $(foreach m,$(DEPS_$(1)),$(BUILD)/libcdx_$(m).a)
# Tests that build fixtures (models, stores) for the clipdexd they run.
DEPS_test_client_daemon := client cluster store classify encoder common
DEPS_test_client_dupes  := client cluster store classify encoder common
DEPS_test_dupes_clips   := dupes store classify encoder common
DEPS_test_client_siglip := client cluster store classify encoder common
DEPS_test_cluster_nats  := client cluster store classify encoder common
DEPS_test_client_tags   := client cluster encoder common
DEPS_test_client_embed  := client cluster encoder common
DEPS_test_client_errors := client cluster encoder common
# The demo model's zero-shot test classifies with the classify module.
DEPS_test_demo_zeroshot := classify encoder common
test_libs = $(if $(DEPS_test_$(1)),$(foreach m,$(DEPS_test_$(1)),$(BUILD)/libcdx_$(m).a),$(call libs_for,$(firstword $(subst _, ,$(1)))))

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

.PHONY: all test check check-asan bench fuzz install clean deps tests run demo
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
$(BUILD)/encoder/encode.o $(BUILD)/encoder/gemm.o: \
    CFLAGS += $(ENCODER_OMP)

define prog_rules
$(BUILD)/$(patsubst %_main.c,%,$(notdir $(1))): $(BUILD)/$(basename $(1)).o $(call libs_for,$(patsubst %/,%,$(dir $(1))))
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach s,$(PROG_SRCS),$(eval $(call prog_rules,$(s))))

.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/tests/%: $(BUILD)/tests/%.o $$(call test_libs,$$*)
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
	tools/deps.sh --web --demo
	$(MAKE) tests
	BUILD=$(BUILD) tests/run.sh $(T)

check: test

check-asan:
	$(MAKE) test SANITIZER=address,undefined

bench: deps
	tools/deps.sh --bench
	$(MAKE) $(BENCHES) $(PROGS)
	BUILD=$(BUILD) bench/run.sh $(B)

# Fuzz targets (fuzz/<name>_fuzz.c, libFuzzer): built with clang, ASan and
# UBSan into build-fuzz/, each run for FUZZ_SECONDS on its seed corpus
# (fuzz/<name>_seeds, else what the case below names).  Every target links
# the daemon's archives and what they need (request_fuzz reaches
# request.c, dispatch.c, access.c and web.c); the others use only encoder,
# classify (clsset_fuzz) and common, which the linker alone takes.  Each
# run's log is kept in build-fuzz/<name>.log; its last status line
# (executions, coverage) is printed, or the log's tail when the target
# fails.
FUZZ_SECONDS ?= 30
FUZZ_SRCS := $(wildcard fuzz/*_fuzz.c)
FUZZ_LIBS := $(foreach m,$(DEPS_daemon),build-fuzz/libcdx_$(m).a)
fuzz:
	tools/deps.sh --fuzz
	$(MAKE) CC=clang CXX=clang++ BUILD=build-fuzz OPT="-O1 -g" \
	    SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	    $(FUZZ_LIBS)
	@set -e; for f in $(FUZZ_SRCS); do \
	    n=$$(basename $$f .c); \
	    clang -std=c11 -D_GNU_SOURCE -I. -g -O1 \
	        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	        -fsanitize-link-c++-runtime \
	        -o build-fuzz/$$n $$f $(FUZZ_LIBS) $(LDLIBS); \
	    seeds=""; case $$n in \
	        image_*) seeds=tests/fixtures/images ;; \
	        heif_*|webp_*|tiff_*|gif_*|bmp_*|raw_*) \
	            seeds=tests/fixtures/images/formats ;; \
	        tokenize_*) seeds="fuzz/tokenize_seeds -dict=fuzz/tokenize.dict" ;; \
	        sptok_*) seeds="fuzz/sptok_seeds -dict=fuzz/sptok.dict" ;; \
	        *) seeds=fuzz/$${n%_fuzz}_seeds ;; esac; \
	    mkdir -p build-fuzz/corpus-$$n; \
	    echo "== $$n ($(FUZZ_SECONDS) s)"; \
	    if ! LSAN_OPTIONS=suppressions=fuzz/lsan-dav1d.supp \
	        build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	        -artifact_prefix=build-fuzz/ \
	        build-fuzz/corpus-$$n $$seeds >build-fuzz/$$n.log 2>&1; then \
	        tail -40 build-fuzz/$$n.log; exit 1; fi; \
	    grep -E "^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs" build-fuzz/$$n.log; \
	done

# The main job: make run MODEL=<CLIP folder> PHOTOS=<folder> [STORE=<dir>]
run: deps
	$(MAKE) $(PROGS)
	BUILD=$(BUILD) MODEL="$(MODEL)" PHOTOS="$(PHOTOS)" STORE="$(STORE)" tools/run.sh

# The offline demo: make demo renders a folder of scenes (again only when the
# renderer or its arguments changed: render --if-stale) and serves it
# with the small CLIP trained by tools/train_demo.py (models/demo); docs/DEMO.md.
# make demo MODEL=<CLIP folder> PHOTOS=<folder> serves your own photos instead.
DEMO_DIR ?= $(HOME)/.local/share/clipdex/demo
demo: deps
	$(if $(PHOTOS),,tools/deps.sh --demo)
	$(MAKE) $(PROGS)
	$(if $(PHOTOS),,/usr/bin/python3 tools/train_demo.py render --if-stale \
	    --dir "$(DEMO_DIR)/photos" --n 400 --dupes 20 --seed 2130)
	@echo "Demo queries once indexed: $(BUILD)/clipdex search \"two red circles\"," \
	    "\"a blue star in the top left\", \"a diamond on a dotted background\";" \
	    "duplicates: $(BUILD)/clipdex dupes --threshold 0.95.  Web page: http://$(or $(HTTP),127.0.0.1:7847)/"
	BUILD=$(BUILD) MODEL="$(or $(MODEL),models/demo)" \
	    PHOTOS="$(or $(PHOTOS),$(DEMO_DIR)/photos)" \
	    STORE="$(or $(STORE),$(if $(PHOTOS),,$(DEMO_DIR)/store))" \
	    HTTP="$(HTTP)" $(if $(PHOTOS),,REEMBED=1 QUERY1="two red circles" \
	    QUERY2="a blue star - 0.5:striped background") tools/run.sh

# The systemd user unit goes with the programs, its ExecStart= pointing at
# where clipdexd is installed (systemctl --user enable --now clipdexd).
SYSTEMD_USER_DIR ?= $(PREFIX)/lib/systemd/user
install: $(PROGS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSTEMD_USER_DIR)
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	sed 's|/usr/local/bin/clipdexd|$(PREFIX)/bin/clipdexd|' \
	    daemon/clipdexd.service >$(DESTDIR)$(SYSTEMD_USER_DIR)/clipdexd.service
	chmod 644 $(DESTDIR)$(SYSTEMD_USER_DIR)/clipdexd.service

clean:
	rm -rf build build-*

# ---- libclipdex: the installed client library ------------------------------
# libclipdex.{a,so} hold only client/*.c, cluster/*.c (a nats:// client
# asks the shards itself) and common/{cdx,proto,path,file,query}.c: a
# program using it needs nng, cJSON and libnats, never the encoder, store
# or FAISS.  The shared library exports exactly the functions
# client/clipdex.h declares (a version script made from the header);
# tests/client_lib.sh checks both.
# Installed with client/clipdex.h and clipdex.pc (pkg-config).
LIBCLIPDEX_VERSION := 0.1.0
LIBCLIPDEX_SOMAJOR := 0
LIBCLIPDEX_OBJS := $(call mod_objs,client) $(call mod_objs,cluster) $(BUILD)/common/cdx.o $(BUILD)/common/proto.o \
                   $(BUILD)/common/path.o $(BUILD)/common/file.o $(BUILD)/common/query.o
LIBCLIPDEX_LIBS := -lnng -lcjson -lnats
LIBCLIPDEX_SO   := $(BUILD)/libclipdex.so.$(LIBCLIPDEX_VERSION)
LIBCLIPDEX      := $(BUILD)/libclipdex.a $(LIBCLIPDEX_SO) $(BUILD)/libclipdex.so \
                   $(BUILD)/libclipdex.so.$(LIBCLIPDEX_SOMAJOR) $(BUILD)/clipdex.pc
LIBDIR          ?= $(PREFIX)/lib
INCLUDEDIR      ?= $(PREFIX)/include

.PHONY: libclipdex install-libclipdex
libclipdex: $(LIBCLIPDEX)
all tests: $(LIBCLIPDEX)

$(BUILD)/libclipdex.a: $(LIBCLIPDEX_OBJS)
	rm -f $@
	ar rcs $@ $^

# { global: <every cdx_ function declared in clipdex.h>; local: *; }
$(BUILD)/libclipdex.map: client/clipdex.h
	@mkdir -p $(@D)
	{ echo 'CLIPDEX_0 {'; echo 'global:'; \
	  sed -n 's/^[a-z][a-z0-9_ ]*[ *]\(cdx_[a-z0-9_]*\)(.*/	\1;/p' $<; \
	  echo 'local: *;'; echo '};'; } >$@

$(LIBCLIPDEX_SO): $(LIBCLIPDEX_OBJS) $(BUILD)/libclipdex.map
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libclipdex.so.$(LIBCLIPDEX_SOMAJOR) \
	    -Wl,--version-script=$(BUILD)/libclipdex.map -Wl,--no-undefined \
	    -o $@ $(LIBCLIPDEX_OBJS) $(LIBCLIPDEX_LIBS)

$(BUILD)/libclipdex.so $(BUILD)/libclipdex.so.$(LIBCLIPDEX_SOMAJOR): $(LIBCLIPDEX_SO)
	ln -sf $(notdir $<) $@

LIBCLIPDEX_PC_SED := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(LIBCLIPDEX_VERSION)|g'
$(BUILD)/clipdex.pc: client/clipdex.pc.in Makefile
	$(LIBCLIPDEX_PC_SED) $< >$@

install: install-libclipdex
install-libclipdex: $(LIBCLIPDEX)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(BUILD)/libclipdex.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(LIBCLIPDEX_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libclipdex.so.$(LIBCLIPDEX_VERSION) \
	    $(DESTDIR)$(LIBDIR)/libclipdex.so.$(LIBCLIPDEX_SOMAJOR)
	ln -sf libclipdex.so.$(LIBCLIPDEX_SOMAJOR) $(DESTDIR)$(LIBDIR)/libclipdex.so
	install -m 644 client/clipdex.h $(DESTDIR)$(INCLUDEDIR)/
	$(LIBCLIPDEX_PC_SED) client/clipdex.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/clipdex.pc

# tests/client_cli.c runs the clipdex program.
$(BUILD)/tests/client_cli: | $(BUILD)/clipdex
# tests/classify_cli.c runs the clipdex program.
$(BUILD)/tests/classify_cli: | $(BUILD)/clipdex
# tests/client_errors.c runs clipdexd.
$(BUILD)/tests/client_errors: | $(BUILD)/clipdexd
# tests/client_dupes.c runs clipdexd and clipdex.
$(BUILD)/tests/client_dupes: | $(BUILD)/clipdex $(BUILD)/clipdexd
# tests/web_browser.sh runs clipdexd with daemon_web's fixtures.
$(BUILD)/tests/daemon_web: | $(BUILD)/clipdexd
# tests/daemon_lifecycle.c runs clipdexd, clipdex and tools/run.sh.
$(BUILD)/tests/daemon_lifecycle: | $(BUILD)/clipdex $(BUILD)/clipdexd
# tests/demo_e2e.c runs clipdexd and clipdex on the demo model.
$(BUILD)/tests/demo_e2e: | $(BUILD)/clipdex $(BUILD)/clipdexd
# tests/demo_docs.c runs them on make demo's folder.
$(BUILD)/tests/demo_docs: | $(BUILD)/clipdex $(BUILD)/clipdexd
# ---- end libclipdex ----------------------------------------------------------

# The tokenizer embeds the vocabulary with .incbin, which -MMD cannot see.
$(BUILD)/encoder/tokenizer_vocab.o: encoder/vocab/bpe_simple_vocab_16e6.txt.gz
# The web page (web/) is embedded in daemon/web.o the same way.
$(BUILD)/daemon/web.o: web/index.html web/app.js web/app.css

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
