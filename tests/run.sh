#!/bin/sh
# Runs every test program in $BUILD/tests (and every tests/*.sh), or those
# whose names contain one of the given patterns.  Each program is a cmocka
# suite; its summary lines are counted.  A program that crashes or exits
# non-zero without a cmocka summary counts as one failure.  Prints the
# total as "N passed, N failed" and exits non-zero on any failure.
BUILD=${BUILD:-build}
export BUILD
passed=0
failed=0
bad=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$BUILD"/tests/* tests/*_*.sh; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	case "$t" in *.o|*.d) continue ;; esac
	name=$(basename "$t")
	if [ $# -gt 0 ]; then
		match=0
		for p in "$@"; do case "$name" in *"$p"*) match=1 ;; esac; done
		[ $match -eq 1 ] || continue
	fi
	start=$(date +%s)
	"$t" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -gt 0 ]; then
		bad="$bad $name"
		echo "FAIL  $name ($p passed, $f failed, ${secs}s, exit $rc)"
		sed 's/^/    /' "$log"
	else
		echo "ok    $name ($p passed, ${secs}s)"
	fi
done

echo
[ -n "$bad" ] && echo "failing:$bad"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
