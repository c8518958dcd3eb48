#!/bin/sh
# The systemd user unit daemon/clipdexd.service (issue 14 item 21): its
# sandbox settings, a store it may write, flags clipdexd knows (--watch,
# so that ~/Pictures is indexed without `clipdex add`), systemd's own
# exposure rating when systemd-analyze is here, and `make install`
# installing it with ExecStart= at the installed clipdexd.
# Prints a cmocka-style summary for tests/run.sh.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
unit=daemon/clipdexd.service
. tests/check.sh

# The unit's settings, continuation lines joined, comments dropped.
sed -e 's/#.*//' "$unit" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' >"$tmp/unit"
setting() { sed -n "s/^$1=//p" "$tmp/unit"; }

hardened() {
	ok=0
	for want in NoNewPrivileges=yes ProtectSystem=strict \
	    ProtectHome=read-only PrivateTmp=yes \
	    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" UMask=0077 \
	    LockPersonality=yes RestrictNamespaces=yes \
	    SystemCallArchitectures=native; do
		grep -qx "$want" "$tmp/unit" || { echo "missing: $want"; ok=1; }
	done
	[ -n "$(setting LimitNOFILE)" ] || { echo "missing: LimitNOFILE="; ok=1; }
	# oneDNN's JIT needs writable, executable memory.
	[ -z "$(setting MemoryDenyWriteExecute)" ] ||
	    { echo "MemoryDenyWriteExecute= would stop oneDNN"; ok=1; }
	# Ordering after local-fs.target does nothing in a user unit.
	! grep -q '^After=.*local-fs.target' "$tmp/unit" ||
	    { echo "After=local-fs.target in a user unit"; ok=1; }
	return $ok
}

# The --store folder is inside a ReadWritePaths= entry (component-wise).
store_writable() {
	store=$(setting ExecStart | sed -n 's/.*--store  *\([^ ]*\).*/\1/p')
	[ -n "$store" ] || { echo "no --store"; return 1; }
	for p in $(setting ReadWritePaths); do
		case "$store/" in "${p%/}/"*) return 0 ;; esac
	done
	echo "--store $store is not under ReadWritePaths=$(setting ReadWritePaths)"
	return 1
}

# Photos are watched (indexed without `clipdex add`), and every flag of
# ExecStart= is one clipdexd knows.
flags_known() {
	setting ExecStart | grep -q -- '--watch ' ||
	    { echo "no --watch in ExecStart="; return 1; }
	[ -x "$BUILD/clipdexd" ] || { echo "(no $BUILD/clipdexd: flags not checked)"; return 0; }
	"$BUILD/clipdexd" --help >"$tmp/help" || return 1
	for f in $(setting ExecStart | tr ' ' '\n' | grep '^--'); do
		grep -q -- "^  $f " "$tmp/help" || { echo "unknown flag $f"; return 1; }
	done
}

# systemd's rating of the unit, offline (tools/deps.sh installs systemd
# for systemd-analyze; it rated the unit before issue 14 at 9.6 UNSAFE).
exposure_ok() {
	command -v systemd-analyze >/dev/null || { echo "no systemd-analyze (tools/deps.sh installs it)"; return 1; }
	cp "$unit" "$tmp/clipdexd.service"
	(cd "$tmp" && systemd-analyze security --offline=yes clipdexd.service) \
	    >"$tmp/rating" 2>&1 || { cat "$tmp/rating"; return 1; }
	level=$(sed -n 's/.*exposure level for clipdexd.service: \([0-9.]*\).*/\1/p' "$tmp/rating")
	echo "exposure $level"
	[ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 3.0) }'
}

# make install puts the unit in $(PREFIX)/lib/systemd/user/ with
# ExecStart= at $(PREFIX)/bin/clipdexd.
installed() {
	# Only where everything it installs is built and up to date (this
	# test builds nothing).
	make -s -q BUILD="$BUILD" "$BUILD/clipdexd" "$BUILD/clipdex" \
	    "$BUILD/libclipdex.so" "$BUILD/libclipdex.a" 2>/dev/null ||
	    { echo "(the programs in $BUILD are not up to date: not checked)"; return 0; }
	make -s install BUILD="$BUILD" DESTDIR="$tmp/root" PREFIX=/opt/cdx ||
	    return 1
	u=$tmp/root/opt/cdx/lib/systemd/user/clipdexd.service
	[ -f "$u" ] || { echo "no $u"; return 1; }
	grep -q '^ExecStart=/opt/cdx/bin/clipdexd ' "$u" ||
	    { echo "ExecStart= not at /opt/cdx/bin/clipdexd"; return 1; }
	[ -x "$tmp/root/opt/cdx/bin/clipdexd" ]
}

check "the unit is sandboxed" hardened
check "the store is writable in the sandbox" store_writable
check "the unit watches the photos with flags clipdexd knows" flags_known
check "systemd-analyze security rates the unit 3.0 or less" exposure_ok
check "make install installs the unit" installed

check_done
