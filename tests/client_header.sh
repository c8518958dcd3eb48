#!/bin/sh
# client/clipdex.h compiles on its own as C and as C++ (warnings as errors),
# and libclipdex (static and shared) links and runs without the encoder,
# store or FAISS: only nng, cJSON and libnats.  Prints a cmocka-style summary for
# tests/run.sh.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
CC=${CC:-cc}
CXX=${CXX:-c++}
# A sanitized build's objects need the sanitizer runtime at link time.
san=""
case "$BUILD" in
*address*|*undefined*|*thread*|*leak*)
	san="-fsanitize=$(echo "${BUILD#build-}" | tr - ,)" ;;
esac
. tests/check.sh

check "header compiles as C99" \
	"$CC" -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only -x c client/clipdex.h
check "header compiles as C++" \
	"$CXX" -std=c++11 -pedantic -Wall -Wextra -Werror -fsyntax-only -x c++ client/clipdex.h
check "header and common/cdx.h together as C++" \
	sh -c "printf '#include \"client/clipdex.h\"\n#include \"common/cdx.h\"\n' |
	    $CXX -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I. -x c++ -"

# The query types are written in clipdex.h (installed, self-contained) and in
# common/query.h (the parser's own header) under one guard: the two copies
# must be the same text.
same_terms() {
	sed -n '/^#ifndef CDX_TERMS_DEFINED/,/^#endif/p' client/clipdex.h >"$tmp/t1"
	sed -n '/^#ifndef CDX_TERMS_DEFINED/,/^#endif/p' common/query.h >"$tmp/t2"
	[ -s "$tmp/t1" ] && diff "$tmp/t1" "$tmp/t2"
}
check "clipdex.h and common/query.h define the same query types" same_terms
check "header and common/query.h together as C" \
	sh -c "printf '#include \"client/clipdex.h\"\n#include \"common/query.h\"\n' |
	    $CC -std=c11 -Wall -Wextra -Werror -fsyntax-only -I. -x c -"

cat >"$tmp/use.cpp" <<'CPP'
#include <clipdex.h>
#include <cstdio>
#include <cstring>

int main()
{
	cdx_terms *t = nullptr;
	if (cdx_query_parse("beach - 0.7:people + id:3", &t) != 0 || t->n != 3 ||
	    t->terms[1].weight > -0.69f || t->terms[2].kind != CDX_TERM_ID)
		return 1;
	cdx_terms_free(t);
	if (std::strcmp(cdx_strerror(CDX_ETIMEDOUT), "timed out") != 0)
		return 2;
	cdx_client *c = nullptr;
	if (cdx_client_open("ipc:///nonexistent/clipdex-header-test.sock", &c) != 0)
		return 3;
	cdx_client_set_connect_timeout(c, 0);
	cdx_status st;
	int rc = cdx_get_status(c, &st);
	cdx_client_close(c);
	return rc == CDX_ECLOSED ? 0 : 4;
}
CPP
check "C++ program links libclipdex.a (nng, cJSON and libnats only) and runs" \
	sh -c "$CXX $san -std=c++11 -Wall -Wextra -Werror -Iclient -o $tmp/use_static \
	    $tmp/use.cpp $BUILD/libclipdex.a -lnng -lcjson -lnats -pthread && $tmp/use_static"
check "C++ program links libclipdex.so and runs" \
	sh -c "$CXX $san -std=c++11 -Wall -Wextra -Werror -Iclient -o $tmp/use_shared \
	    $tmp/use.cpp -L$BUILD -lclipdex -pthread &&
	    LD_LIBRARY_PATH=$BUILD $tmp/use_shared"
check "libclipdex.so exports only cdx_ names" \
	sh -c "! nm -D --defined-only $BUILD/libclipdex.so | awk '\$2 ~ /^[TDB]\$/ {print \$3}' |
	    grep -v '^cdx_' | grep -v '^_init\$' | grep -v '^_fini\$' | grep ."

check_done
