#!/bin/sh
# Runs every benchmark program in $BUILD/bench, or those whose names contain
# one of the given patterns (make bench B=image).  Each prints its own
# figures; this script stops at the first one that fails.
BUILD=${BUILD:-build}
export BUILD
status=0
for b in "$BUILD"/bench/*; do
	[ -f "$b" ] && [ -x "$b" ] || continue
	case "$b" in *.o|*.d) continue ;; esac
	name=$(basename "$b")
	if [ $# -gt 0 ]; then
		match=0
		for p in "$@"; do case "$name" in *"$p"*) match=1 ;; esac; done
		[ $match -eq 1 ] || continue
	fi
	echo "== $name"
	"$b" || { echo "bench: $name failed" >&2; status=1; }
	echo
done
exit $status
