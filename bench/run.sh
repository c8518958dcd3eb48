#!/bin/sh
# Runs every benchmark program in $BUILD/bench, or those whose names contain
# one of the given patterns (make bench B=image).  Each prints its own
# figures, then this script the seconds it took; a failure is reported and
# the others still run (exit status 1).  The benchmarks run without
# arguments: encoder_bench then measures every model shape at every
# precision, demo_eval every precision against fp32.  store_large (10M
# images, about half an hour) runs only when named.
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
	elif [ "$name" = store_large ]; then
		continue        # half an hour: only when named (B=store_large)
	fi
	echo "== $name"
	t0=$(date +%s)
	"$b" || { echo "bench: $name failed" >&2; status=1; }
	echo "== $name: $(( $(date +%s) - t0 )) s"
	echo
done
exit $status
