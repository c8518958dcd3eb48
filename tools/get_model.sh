#!/bin/sh
# Downloads a Hugging Face CLIP model folder, the files clipdex reads:
#   tools/get_model.sh [REPO] [DIR]
# REPO defaults to openai/clip-vit-base-patch32, DIR to models/<name>.
# Needs network access to huggingface.co (set HF_ENDPOINT for a mirror).
set -eu
REPO=${1:-openai/clip-vit-base-patch32}
DIR=${2:-models/$(basename "$REPO")}
BASE=${HF_ENDPOINT:-https://huggingface.co}
mkdir -p "$DIR"
for f in config.json preprocessor_config.json vocab.json merges.txt \
    model.safetensors; do
	if [ -s "$DIR/$f" ]; then
		echo "have $DIR/$f"
		continue
	fi
	echo "fetching $REPO/$f"
	curl -fL --retry 3 -o "$DIR/$f.part" "$BASE/$REPO/resolve/main/$f"
	mv "$DIR/$f.part" "$DIR/$f"
done
echo "model folder: $DIR"
