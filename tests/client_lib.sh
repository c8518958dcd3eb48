#!/bin/sh
# What libclipdex.so depends on and exports (issue 14 item 19): it needs
# only nng, cJSON, libnats (a nats:// client) and the C runtime (never the
# encoder, store, FAISS or the daemon), and it exports exactly the
# functions client/clipdex.h declares.
# Prints a cmocka-style summary for tests/run.sh.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
so=$BUILD/libclipdex.so
. tests/check.sh

# Direct dependencies: nng, cJSON, libnats, the C runtime (and a
# sanitizer's).
needed_ok() {
	readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' >"$tmp/needed"
	cat "$tmp/needed"
	grep -q '^libnng\.' "$tmp/needed" && grep -q '^libcjson\.' "$tmp/needed" &&
	    ! grep -v -E '^(libnng|libcjson|libnats|libc|libm|libpthread|libdl|librt|ld-linux[-a-z0-9_]*|libasan|libubsan|libgcc_s|libstdc\+\+)\.so' \
	    "$tmp/needed"
}

# Everything loaded: no clipdex module's dependency sneaks in through
# another library.
ldd_ok() {
	ldd "$so" >"$tmp/ldd" || return 1
	cat "$tmp/ldd"
	! grep -i -E 'faiss|lmdb|jpeg|spng|exif|xxhash|sentencepiece|dnnl|openblas|gomp|libz\.' \
	    "$tmp/ldd"
}

# The exported functions are exactly those the header declares.
exports_ok() {
	sed -n 's/^[a-z][a-z0-9_ ]*[ *]\(cdx_[a-z0-9_]*\)(.*/\1/p' \
	    client/clipdex.h | sort >"$tmp/declared"
	nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVWi]$/ {print $3}' |
	    sed 's/@.*//' | grep -v -E '^(_init|_fini)$' | sort >"$tmp/exported"
	[ -s "$tmp/declared" ] && diff "$tmp/declared" "$tmp/exported"
}

check "libclipdex.so needs only nng, cJSON, libnats and libc" needed_ok
check "ldd libclipdex.so names no module dependency" ldd_ok
check "libclipdex.so exports exactly the functions of clipdex.h" exports_ok

check_done
