#!/bin/sh
# The web page in a real browser: starts $BUILD/clipdexd on a temporary
# store with the generated model and photos of tests/daemon_web.c
# (--fixture), indexes them, and runs tests/web/browser.js (playwright-core
# driving Debian's headless Chromium).  tools/deps.sh --web installs
# Chromium and Node; `make test` runs it.  The npm package is installed
# here (npm ci) when tests/web/node_modules is missing or stale.
#
#   WEB_SCREENSHOT=docs/web.png tests/web_browser.sh   also saves a screenshot
#   WEB_DEMO=DIR   with WEB_SCREENSHOT: the screenshot is of the demo model
#                  (models/demo) on DIR, the photos of `make demo` (or
#                  tools/train_demo.py render --dir DIR), searched for
#                  "two red circles"
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

fail() {
	echo "web_browser: $*"
	echo "[  FAILED  ] 1 test(s)"
	exit 1
}

[ -x /usr/bin/chromium ] || fail "no /usr/bin/chromium (run tools/deps.sh --web)"
command -v node >/dev/null 2>&1 || fail "no node (run tools/deps.sh --web)"
[ -x "$BUILD/clipdexd" ] || fail "no $BUILD/clipdexd (make $BUILD/clipdexd)"
[ -x "$BUILD/tests/daemon_web" ] || fail "no $BUILD/tests/daemon_web"

mod=tests/web/node_modules/playwright-core/package.json
if [ ! -f "$mod" ] || [ tests/web/package-lock.json -nt "$mod" ]; then
	(cd tests/web && npm ci --no-audit --no-fund --loglevel=error) ||
	    fail "npm ci in tests/web failed"
fi

tmp=$(cd "$(mktemp -d /tmp/cdx-webtest-XXXXXX)" && pwd -P)

tok=webtest-token
pid1=""
pid2=""
pid3=""
cleanup() {
	for p in $pid1 $pid2 $pid3; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$BUILD/tests/daemon_web" --fixture "$tmp" || fail "cannot write the fixtures"

# start_daemon N HOST [FLAG...]: clipdexd number N (its own store) on HOST
# and a free port, answering, with $d_model on $d_photos; sets pidN and
# portN.
d_model=$tmp/model
d_photos=$tmp/photos
start_daemon() {
	n=$1
	host=$2
	shift 2
	for attempt in 1 2 3 4 5 6 7 8; do
		p=$(( 20000 + ($$ * 13 + n * 7919 + attempt * 977) % 40000 ))
		"$BUILD/clipdexd" --model "$d_model" --store "$tmp/store$n" \
		    --listen "ipc://$tmp/d$n.sock" --http "$host:$p" \
		    --root "$d_photos" --threads 1 "$@" \
		    >"$tmp/clipdexd$n.log" 2>&1 &
		pid=$!
		eval "pid$n=$pid"
		for i in $(seq 1 200); do
			if curl -sf -H "Authorization: Bearer $tok" \
			    -d '{"op":"status"}' "http://127.0.0.1:$p/api" \
			    >/dev/null 2>&1; then
				eval "port$n=$p"
				curl -sf -H "Authorization: Bearer $tok" -d \
				    "{\"op\":\"add\",\"path\":\"$d_photos\",\"wait\":true}" \
				    "http://127.0.0.1:$p/api" >/dev/null ||
				    fail "indexing failed (clipdexd $n)"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		eval "pid$n="
	done
	cat "$tmp/clipdexd$n.log"
	fail "clipdexd $n did not start"
}

start_daemon 1 127.0.0.1
# A second daemon on a non-loopback address, so with a token: the page must
# ask for it.
start_daemon 2 0.0.0.0 --token "$tok"

shot=""
[ -n "$WEB_SCREENSHOT" ] && shot="$root/$WEB_SCREENSHOT"
demo_url=""
if [ -n "$shot" ] && [ -n "$WEB_DEMO" ]; then
	[ -d "$WEB_DEMO" ] || fail "WEB_DEMO=$WEB_DEMO is not a folder"
	d_model=$root/models/demo
	d_photos=$(cd "$WEB_DEMO" && pwd -P)
	start_daemon 3 127.0.0.1
	demo_url="http://127.0.0.1:$port3"
fi
WEB_DEMO_URL="$demo_url" \
WEB_TOKEN_URL="http://127.0.0.1:$port2" WEB_TOKEN="$tok" \
    timeout 120 node tests/web/browser.js "http://127.0.0.1:$port1" "$tmp/photos" \
    ${shot:+"$shot"}
rc=$?
[ $rc -eq 0 ] || tail -n 20 "$tmp"/clipdexd*.log
exit $rc
