#!/bin/sh
# Installs the Debian packages clipdex needs, idempotently: packages that are
# already installed are not touched and nothing is downloaded when none is
# missing.  Runs apt-get as root, or through sudo when available.
#
#   tools/deps.sh           build and test dependencies
#   tools/deps.sh --bench   also PyTorch (the benchmarks compare against it)
#   tools/deps.sh --tools   also what tools/*.py need to regenerate fixtures
#   tools/deps.sh --web     also Chromium and Node for the browser test
#                           (tests/web_browser.sh; `make test` asks for it)
#   tools/deps.sh --demo    also what renders the demo photos (make demo)
set -eu
# (liblcms2-dev: libraw_r's pkg-config --libs names -llcms2, and the
# Makefile's fallback link line does too.)
# (FFmpeg's libav* libraries read video clips, encoder/video.c; the ffmpeg
# tool makes the clips the tests and the image benchmark use.)

pkgs="build-essential clang pkg-config libfaiss-dev liblmdb-dev libturbojpeg0-dev
libopenblas-dev libnng-dev libcjson-dev libspng-dev libexif-dev libxxhash-dev
libcmocka-dev zlib1g-dev curl libsentencepiece-dev libdnnl-dev libmicrohttpd-dev
libjpeg62-turbo-dev libheif-dev libwebp-dev libtiff-dev libgif-dev libstb-dev
libraw-dev liblcms2-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
libnats-dev nats-server
ffmpeg systemd"
for a in "$@"; do
	case "$a" in
	--bench) pkgs="$pkgs python3-torch python3-numpy python3-pil python3-regex" ;;
	--fuzz) pkgs="$pkgs libclang-rt-14-dev" ;;
	--web) pkgs="$pkgs chromium"
		# Node from elsewhere (e.g. NodeSource) ships its own npm.
		command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
		command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm" ;;
	# libheif-examples (heif-enc, heif-convert) and libraw-bin (dcraw_emu)
	# make and check tools/ref_images.py --formats' references
	--tools) pkgs="$pkgs python3-torch python3-numpy python3-pil python3-regex python3-sentencepiece sentencepiece libheif-examples libraw-bin" ;;
	--demo) pkgs="$pkgs python3-numpy python3-pil" ;;
	*) echo "deps.sh: unknown option $a" >&2; exit 2 ;;
	esac
done

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps.sh: need root (or sudo) to install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
