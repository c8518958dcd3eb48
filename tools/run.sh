#!/bin/sh
# The main job: install what is missing, build, start clipdexd on a model
# folder and a photo folder, index the photos, and keep serving until
# Ctrl-C.  Used by `make run MODEL=DIR PHOTOS=DIR [STORE=DIR] [HTTP=H:P]`.
set -eu
: "${MODEL:?set MODEL=path/to/a Hugging Face CLIP folder (see README.md)}"
: "${PHOTOS:?set PHOTOS=path/to/your photos}"
STORE=${STORE:-$HOME/.local/share/clipdex/store}
HTTP=${HTTP:-127.0.0.1:7847}
Q1=${QUERY1:-a dog on a beach}
Q2=${QUERY2:-beach - people}
BUILD=${BUILD:-build}
# REEMBED=1: a store made by another model is opened and its photos
# embedded again (clipdexd --reembed); `make demo` sets it for its own
# store, which a newer demo model would otherwise refuse.
REEMBED=${REEMBED:-0}

mkdir -p "$(dirname "$STORE")"
PHOTOS=$(cd "$PHOTOS" && pwd)
# Idle OpenMP (FAISS) threads would spin and steal the cores OpenBLAS needs.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# clipdexd and clipdex agree on the default address (CLIPDEX_URL, else a
# socket in $XDG_RUNTIME_DIR or /tmp).
#
# Stopping: the daemon runs in a session of its own (setsid), so the
# terminal's Ctrl-C and hang-up reach this script only; its trap sends the
# daemon one SIGTERM (the index is saved) and waits for it.  A second
# Ctrl-C while the daemon stops sends nothing more.  Should this script be
# killed outright, CLIPDEXD_PARENT_DEATH=1 has the kernel send the daemon
# SIGTERM (clipdexd --help).
pid=
stopping=0
stop() {
	[ -n "$pid" ] || exit 130
	if [ $stopping -eq 0 ]; then
		stopping=1
		kill -TERM $pid 2>/dev/null || true
	fi
	rc=0
	wait $pid || rc=$?
	# A signal that interrupts this wait runs stop again.
	exit $rc
}
trap stop INT TERM HUP
set -- --model "$MODEL" --store "$STORE" --root "$PHOTOS" --http "$HTTP"
[ "$REEMBED" = 1 ] && set -- "$@" --reembed
CLIPDEXD_PARENT_DEATH=1 setsid "$BUILD/clipdexd" "$@" &
pid=$!
i=0
until "$BUILD/clipdex" status >/dev/null 2>&1; do
	kill -0 $pid 2>/dev/null || { echo "run: clipdexd did not start" >&2; exit 1; }
	i=$((i + 1)); [ $i -lt 600 ] || { echo "run: clipdexd is not answering" >&2; exit 1; }
	sleep 0.1
done
"$BUILD/clipdex" add "$PHOTOS" --wait
"$BUILD/clipdex" status
cat <<MSG

clipdexd is serving $PHOTOS (store: $STORE).
Search from another terminal, or open http://$HTTP/ in a browser:
  $BUILD/clipdex search "$Q1"
  $BUILD/clipdex search "$Q2" -k 20
  $BUILD/clipdex dupes
  curl -s -d '{"op":"search","text":"$Q1","k":5}' http://$HTTP/api
Ctrl-C (or closing this terminal) stops the daemon; the index is saved.
MSG
rc=0
wait $pid || rc=$?
exit $rc
