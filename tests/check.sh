# check.sh - what the shell suites (tests/*_*.sh) share; sourced after
# they cd to the repository.  $tmp is a folder removed at exit;
# `check NAME CMD...` runs CMD and prints the cmocka-style line that
# tests/run.sh counts (with CMD's output when it fails); `check_done`
# prints the summary and returns non-zero when a check failed.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() {
	name=$1
	shift
	if "$@" >"$tmp/log" 2>&1; then
		passed=$((passed + 1))
		echo "[       OK ] $name"
	else
		failed=$((failed + 1))
		echo "[  FAILED  ] $name"
		sed 's/^/    /' "$tmp/log"
	fi
}

check_done() {
	echo "[==========] $((passed + failed)) test(s) run."
	[ "$passed" -gt 0 ] && echo "[  PASSED  ] $passed test(s)."
	[ "$failed" -gt 0 ] && echo "[  FAILED  ] $failed test(s)."
	[ "$failed" -eq 0 ]
}
