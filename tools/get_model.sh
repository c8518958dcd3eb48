#!/bin/sh
# Downloads a Hugging Face model folder, the files clipdex reads:
#   tools/get_model.sh [REPO] [DIR]
# REPO defaults to openai/clip-vit-base-patch32, DIR to models/<name>.
# The family comes from the repository's config.json (model_type), as
# clipdex itself decides it:
#   clip     config.json preprocessor_config.json vocab.json merges.txt
#            model.safetensors
#   siglip   config.json preprocessor_config.json model.safetensors
#            tokenizer_config.json special_tokens_map.json and the
#            SentencePiece model: spiece.model (SigLIP) or tokenizer.model
#            (SigLIP2, whose tokenizer.json comes along for reference)
# e.g. tools/get_model.sh google/siglip-base-patch16-224
#      tools/get_model.sh google/siglip2-base-patch16-224
# Needs network access to huggingface.co (set HF_ENDPOINT for a mirror).
set -eu
REPO=${1:-openai/clip-vit-base-patch32}
DIR=${2:-models/$(basename "$REPO")}
BASE=${HF_ENDPOINT:-https://huggingface.co}
mkdir -p "$DIR"

# fetch FILE [optional]: downloads FILE unless it is there; an optional
# file that the repository lacks is skipped (returns 1).
fetch() {
	if [ -s "$DIR/$1" ]; then
		echo "have $DIR/$1"
		return 0
	fi
	echo "fetching $REPO/$1"
	if curl -fL --retry 3 -o "$DIR/$1.part" "$BASE/$REPO/resolve/main/$1"; then
		mv "$DIR/$1.part" "$DIR/$1"
		return 0
	fi
	rm -f "$DIR/$1.part"
	if [ "${2:-}" = optional ]; then
		echo "($REPO has no $1)"
		return 1
	fi
	echo "get_model.sh: cannot fetch $REPO/$1" >&2
	exit 1
}

fetch config.json
family=$(sed -n 's/.*"model_type" *: *"\([a-z0-9_]*\)".*/\1/p' \
    "$DIR/config.json" | tail -n 1)
case "$family" in
"" | clip)
	for f in preprocessor_config.json vocab.json merges.txt \
	    model.safetensors; do
		fetch "$f"
	done ;;
siglip)
	for f in preprocessor_config.json tokenizer_config.json \
	    model.safetensors; do
		fetch "$f"
	done
	fetch special_tokens_map.json optional || true
	if ! fetch spiece.model optional; then
		fetch tokenizer.model   # SigLIP2: the Gemma vocabulary
		fetch tokenizer.json optional || true
	fi ;;
siglip2)
	echo "get_model.sh: $REPO is a SigLIP2 NaFlex checkpoint" \
	    "(model_type siglip2), which clipdex does not run; take a FixRes" \
	    "one, e.g. google/siglip2-base-patch16-224" >&2
	exit 1 ;;
*)
	echo "get_model.sh: $REPO has model_type '$family'; clipdex runs" \
	    "clip and siglip folders" >&2
	exit 1 ;;
esac
echo "model folder ($family): $DIR"
