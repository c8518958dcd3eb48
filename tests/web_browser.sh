#!/bin/sh
# The web page in a real browser: starts $BUILD/clipdexd on a temporary
# store with the generated model and photos of tests/daemon_web.c
# (--fixture), indexes them, and runs tests/web/browser.js (playwright-core
# driving Debian's headless Chromium).  tools/deps.sh --web installs
# Chromium and Node; `make test` runs it.  The npm package is installed
# here (npm ci) when tests/web/node_modules is missing or stale.
#
#   WEB_SCREENSHOT=docs/web.png tests/web_browser.sh   also saves a screenshot
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
pid=""
pid2=""
cleanup() {
	for p in $pid $pid2; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$BUILD/tests/daemon_web" --fixture "$tmp" || fail "cannot write the fixtures"

# A free port: try a few until clipdexd starts.
for attempt in 1 2 3 4 5 6 7 8; do
	port=$(( 20000 + ($$ * 13 + attempt * 977) % 40000 ))
	"$BUILD/clipdexd" --model "$tmp/model" --store "$tmp/store" \
	    --listen "ipc://$tmp/d.sock" --http "127.0.0.1:$port" \
	    --root "$tmp/photos" --threads 1 >"$tmp/clipdexd.log" 2>&1 &
	pid=$!
	up=0
	for i in $(seq 1 200); do
		if curl -sf -d '{"op":"status"}' "http://127.0.0.1:$port/api" \
		    >/dev/null 2>&1; then
			up=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ $up -eq 1 ] && break
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=""
done
[ -n "$pid" ] || { cat "$tmp/clipdexd.log"; fail "clipdexd did not start"; }

curl -sf -d "{\"op\":\"add\",\"path\":\"$tmp/photos\",\"wait\":true}" \
    "http://127.0.0.1:$port/api" >/dev/null || fail "indexing failed"

# A second daemon on a non-loopback address, so with a token: the page must
# ask for it.  (Same photos, its own store.)
tok=webtest-token
port2=$(( port + 1 ))
"$BUILD/clipdexd" --model "$tmp/model" --store "$tmp/store2" \
    --listen "ipc://$tmp/d2.sock" --http "0.0.0.0:$port2" --token "$tok" \
    --root "$tmp/photos" --threads 1 >"$tmp/clipdexd2.log" 2>&1 &
pid2=$!
for i in $(seq 1 200); do
	curl -sf -H "Authorization: Bearer $tok" -d '{"op":"status"}' \
	    "http://127.0.0.1:$port2/api" >/dev/null 2>&1 && break
	kill -0 "$pid2" 2>/dev/null || { cat "$tmp/clipdexd2.log"; fail "clipdexd (token) did not start"; }
	sleep 0.1
done
curl -sf -H "Authorization: Bearer $tok" \
    -d "{\"op\":\"add\",\"path\":\"$tmp/photos\",\"wait\":true}" \
    "http://127.0.0.1:$port2/api" >/dev/null || fail "indexing (token) failed"

shot=""
[ -n "$WEB_SCREENSHOT" ] && shot="$root/$WEB_SCREENSHOT"
WEB_TOKEN_URL="http://127.0.0.1:$port2" WEB_TOKEN="$tok" \
    timeout 120 node tests/web/browser.js "http://127.0.0.1:$port" "$tmp/photos" \
    ${shot:+"$shot"}
rc=$?
[ $rc -eq 0 ] || sed 's/^/    clipdexd: /' "$tmp/clipdexd.log" | tail -20
exit $rc
