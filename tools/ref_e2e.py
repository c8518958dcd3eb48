#!/usr/bin/python3
"""End-to-end reference: files and texts in, embeddings out.

Run once with Debian's python3 (torch, PIL, numpy, regex) from the
repository root:

    /usr/bin/python3 tools/ref_e2e.py

For the model recipe b32_quick_f32 of tools/ref_clip.py (its weights are
regenerated bit for bit by tests/testmodel.h), computes with the independent
implementations:

  images: Pillow decoding + exif_transpose (tools/ref_images.py), the Hugging
          Face CLIP image processor's resize/crop/normalise, then the PyTorch
          CLIP vision tower (tools/ref_clip.py)
  texts:  OpenAI's simple_tokenizer (tools/ref_tokenize.py), then the PyTorch
          text tower

and writes tests/fixtures/e2e/b32_quick_f32.json, which tests/encoder_e2e.c
checks clipdex's whole path against (file -> clip_image_load ->
clip_image_preprocess -> clip_encode_images; text -> clip_tokenize ->
clip_encode_text).  It also writes tests/fixtures/e2e/photo.jpg, a 1200x900
photo-like JPEG large enough for fast mode to decode at a reduced DCT scale.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_clip  # noqa: E402
import ref_images  # noqa: E402
import ref_tokenize  # noqa: E402

OUT = "tests/fixtures/e2e"
RECIPE = "b32_quick_f32"
IMAGES = [
    "tests/fixtures/images/j_big.jpg",
    "tests/fixtures/images/j_base.jpg",
    "tests/fixtures/images/j_prog.jpg",
    "tests/fixtures/images/j_gray.jpg",
    "tests/fixtures/images/j_cmyk.jpg",
    "tests/fixtures/images/j_ycck.jpg",
    "tests/fixtures/images/j_orient3.jpg",
    "tests/fixtures/images/j_orient6.jpg",
    "tests/fixtures/images/j_orient8.jpg",
    "tests/fixtures/images/p_rgb.png",
    "tests/fixtures/images/p_rgba.png",
    "tests/fixtures/images/p_pal_trns.png",
    "tests/fixtures/images/p_gray16.png",
    "tests/fixtures/images/p_orient6.png",
    "tests/fixtures/e2e/photo.jpg",
]
TEXTS = [
    "a photo of a cat",
    "A Dog!!",
    "two small red circles on a striped background",
    "a large blue triangle in the top left",
    "café au lait, s'il vous plaît",
    "Ελληνικά και 日本語 🐱",
    "&amp; html &lt;entities&gt;",
    " ".join(["long"] * 90),
    "",
]


def make_photo(path):
    """Smooth gradients, soft shapes and mild noise: a stand-in photo."""
    w, h = 1200, 900
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + 100 * y / h, 140 + 60 * y / h, 230 - 80 * y / h], -1)
    im = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((150, 120, 450, 420), fill=(250, 210, 80))
    d.rectangle((600, 450, 1100, 850), fill=(60, 120, 50))
    d.polygon([(500, 900), (800, 300), (1150, 900)], fill=(120, 110, 100))
    im = im.filter(ImageFilter.GaussianBlur(3))
    rng = np.random.RandomState(5)
    a = np.array(im).astype(np.float32) + rng.normal(0, 4, (h, w, 3))
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
        path, quality=85)


def pixels(path, r):
    """HF CLIPImageProcessor output for a file (CHW float32)."""
    size = r["vision"]["image_size"]
    ref_images.OUT = os.path.dirname(path)
    rgb = ref_images.pil_rgb(os.path.basename(path))
    crop = ref_images.hf_resize_crop(rgb, size, size, size)
    x = (crop.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.array(ref_images.MEAN, np.float32)
    std = np.array(ref_images.STD, np.float32)
    x = (x - mean) / std
    return x.transpose(2, 0, 1)


def main():
    os.makedirs(OUT, exist_ok=True)
    make_photo(os.path.join(OUT, "photo.jpg"))
    torch.set_num_threads(1)
    r = next(x for x in ref_clip.RECIPES if x["name"] == RECIPE)
    W32 = ref_clip.write_safetensors("/tmp/ref_e2e.safetensors", r)
    os.unlink("/tmp/ref_e2e.safetensors")
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W32.items()}

    px = np.stack([pixels(p, r) for p in IMAGES])
    ie = ref_clip.vision_forward(W, r, torch.from_numpy(
        px.astype(np.float64))).numpy()
    tok = ref_tokenize.SimpleTokenizer()
    ids = []
    for t in TEXTS:
        body = tok.encode(t)[:75]
        s = [ref_clip.SOT] + body + [ref_clip.EOT]
        ids.append(s + [ref_clip.EOT] * (77 - len(s)))
    te = ref_clip.text_forward(W, r, ids).numpy()
    fx = {
        "generator": "tools/ref_e2e.py",
        "recipe": RECIPE,
        "images": [{"file": p, "embedding": [float(v) for v in e]}
                   for p, e in zip(IMAGES, ie)],
        "texts": [{"text": t, "ids": i, "embedding": [float(v) for v in e]}
                  for t, i, e in zip(TEXTS, ids, te)],
    }
    with open(os.path.join(OUT, RECIPE + ".json"), "w") as f:
        json.dump(fx, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")
    cos = ie @ ie.T
    print("images: %d, max off-diagonal cosine %.4f" % (
        len(IMAGES), max(cos[i, j] for i in range(len(IMAGES))
                         for j in range(len(IMAGES)) if i != j)))


if __name__ == "__main__":
    main()
