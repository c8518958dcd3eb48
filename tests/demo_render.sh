#!/bin/sh
# make demo renders its folder again only when it is stale
# (tools/train_demo.py render --if-stale): a folder this renderer made
# with the same arguments is left alone; one made by an older renderer (or
# with other arguments) is rendered again.  Debian's python3 with numpy
# and PIL (tools/deps.sh --demo, which make test runs).
# Prints a cmocka-style summary for tests/run.sh.
cd "$(dirname "$0")/.." || exit 1
. tests/check.sh
py=/usr/bin/python3
dir=$tmp/photos
render() {
	$py tools/train_demo.py render --if-stale --dir "$dir" --n 4 \
	    --dupes 1 --seed "$1" >/dev/null
}
renderer() {
	$py -c 'import json, sys; print(json.load(open(sys.argv[1]))
	    ["made_by"]["renderer"])' "$dir/scenes.json"
}

fresh_then_kept() {
	render 7 && [ -f "$dir/scene_0000.jpg" ] || return 1
	echo marker >"$dir/scene_0000.jpg"
	render 7 && [ "$(cat "$dir/scene_0000.jpg")" = marker ]
}

stale_renderer_again() {
	$py -c 'import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["made_by"]["renderer"] -= 1
json.dump(d, open(p, "w"))' "$dir/scenes.json" || return 1
	old=$(renderer)
	render 7 && [ "$(cat "$dir/scene_0000.jpg")" != marker ] &&
	    [ "$(renderer)" -eq $((old + 1)) ]
}

other_seed_again() {
	echo marker >"$dir/scene_0000.jpg"
	render 8 && [ "$(cat "$dir/scene_0000.jpg")" != marker ]
}

check "a folder this renderer made with these arguments is kept" fresh_then_kept
check "a folder of an older renderer is rendered again" stale_renderer_again
check "a folder made with other arguments is rendered again" other_seed_again
check_done
