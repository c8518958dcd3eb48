#!/usr/bin/python3
"""The demo model: a small CLIP trained by clipdex on rendered scenes.

Renders a synthetic image-caption set (shapes of several kinds, colours,
sizes, counts and positions over plain, striped, dotted, checkered and
gradient backgrounds; captions generated from the scene with paraphrased
templates), trains a small CLIP in the Hugging Face layout on it
(symmetric InfoNCE with a learned logit scale, plus an image-image term
between a scene and an augmented copy so that edited copies of a photo stay
close), and exports config.json, preprocessor_config.json and
model.safetensors (F16) to models/demo/.  It then renders a held-out set
(other seeds) to a folder, with transformed copies and queries, and
evaluates the exported F16 weights with the independent float64 forward of
tools/ref_clip.py; bench/demo_eval.c reads the same folder and reports the
figures from clipdex's C encoder beside these.

Debian's python3 (python3-torch, python3-numpy, python3-pil,
python3-regex); CPU only.

  tools/train_demo.py train [--out models/demo] [--steps N] [--threads T]
  tools/train_demo.py eval  --model models/demo --dir DIR   (held-out set)
  tools/train_demo.py zeroshot --model DIR   (zero-shot top-1, varied scenes)
  tools/train_demo.py average --out DIR MODEL_DIR...   (mean weights)
  tools/train_demo.py render --dir DIR [--n N] [--seed S] [--dupes D]
        [--if-stale]
        (a demo photo folder: N scenes, D near-duplicate copies planted,
         DIR/scenes.json lists each file's scene and caption)

How the shipped weights (models/demo/) were made, in two runs on this
2-core VM, 42 minutes in all with the transformer blocks under bf16
autocast (--precision auto, the default, where the CPU has native bf16;
about an hour in float32; models/demo/TRAINING.txt has the figures,
docs/DEMO.md why):
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/train_demo.py train \
      --out /tmp/r1 --patch 8 --pretrain-steps 3000 --steps 1500 \
      --lr 0.001 --vision-lr 0.5 --sup-weight 1 --shape-weight 3 \
      --threads 2 --seed 2001                                   (1452 s)
      (supervised pretraining of the vision tower with attribute heads,
      then CLIP training with the heads as a term)
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/train_demo.py train \
      --out models/demo --init /tmp/r1 --patch 8 --pretrain-steps 2000 \
      --pretrain-text --steps 800 --lr 0.0005 --vision-lr 0.5 \
      --shape-weight 3 --threads 2 --seed 2002                  (1076 s)
      (the vision tower again, now against the frozen text tower's
      attribute texts, then CLIP training)
  (seeds: held-out set 777, test fixtures 4242, make demo's folder 2130;
  OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads lost more than half of
  the time to the other work.)
"""
import argparse
import io
import json
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SOT, EOT = 49406, 49407
RENDER = 128            # rendered scene size (the photos)
IMAGE = 64              # model input size
PATCH = 16
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

CONFIG = dict(
    projection_dim=64,
    text=dict(width=32, layers=4, heads=4, mlp=128, act="quick_gelu",
              eps=1e-5),
    vision=dict(width=96, layers=4, heads=3, mlp=384, act="quick_gelu",
                eps=1e-5, image_size=IMAGE, patch_size=PATCH),
)
VOCAB, MAXPOS = 49408, 77
# Training runs the transformer blocks under bf16 autocast where the CPU
# multiplies bf16 natively (train --precision; weights, optimiser state,
# embeddings and losses stay float32); everything else runs in float32.
BF16 = False

# ---- scenes ----------------------------------------------------------------

SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross"]
COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 220),
    "yellow": (240, 220, 30), "orange": (245, 140, 20),
    "purple": (140, 40, 180), "white": (250, 250, 250),
    "black": (15, 15, 15),
}
COLOUR_NAMES = list(COLOURS)
SIZES = ["small", "large"]
COUNTS = ["one", "two", "three", "four"]
BACKGROUNDS = ["plain", "striped", "dotted", "checkered", "gradient"]
# 3 x 3 cells, (row, col) -> phrase
POSITIONS = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "center", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
POS_NAMES = list(POSITIONS.values())


def sample_scene(rng, vary=False):
    """A scene: a dict of attributes and a layout, from random.Random.
    The world as the demo shows it (make demo's folder, the held-out set):
    two radii ranges, objects near their cell's centre, a square or star
    turned a little, the named colours exactly.  With vary (training, and
    the zero-shot check), sizes, positions, rotations, background tones
    and the object's colour vary more widely around the named values, so
    that the model learns the names and not a few exact pictures."""
    n = rng.choice([1, 1, 2, 3, 4])
    size = rng.choice(SIZES) if n <= 2 else "small"
    s = dict(shape=rng.choice(SHAPES), colour=rng.choice(COLOUR_NAMES),
             size=size, count=n, bg=rng.choice(BACKGROUNDS), pos=None)
    bg_tones(s, rng, vary)
    s["bgparam"] = [rng.random(), rng.random(), rng.random()]
    if vary:
        s["jitter"] = [rng.randint(-18, 18) for _ in range(3)]
    layout(s, rng, vary)
    if vary:    # dots in offset rows, or in a square grid (rows and columns)
        s["lattice"] = rng.choice(["offset", "square"])
    return s


def bg_tones(s, rng, vary=True):
    """Two muted background tones, never too close to the object colour."""
    obj = np.array(COLOURS[s["colour"]], float)
    sat, val, off = ((0.0, 0.4), (0.28, 0.9), (35, 90)) if vary else \
        ((0.05, 0.35), (0.35, 0.85), (40, 80))
    while True:
        h = rng.random()
        base = np.array(hsv(h, rng.uniform(*sat), rng.uniform(*val)))
        if np.abs(base - obj).sum() > 160:
            break
    other = np.clip(base + rng.choice([-1, 1]) * rng.uniform(*off), 0, 255)
    s["tones"] = [[int(v) for v in base], [int(v) for v in other]]


# how far each shape may turn (radians) and still be that shape: a square
# turned 45 degrees would be a diamond
TURN = {"circle": 0.0, "square": 0.35, "diamond": 0.35, "triangle": math.pi,
        "star": math.pi, "cross": 0.5}
# without vary: a square turns by up to 0.2 x 2 pi, a star 0.3 x 2 pi
FIXED_TURN = {"square": 0.2, "star": 0.3}


def layout(s, rng, vary=True):
    """Places s["count"] objects of s["size"]: s["objs"] (and s["pos"] for
    one object)."""
    n, size = s["count"], s["size"]
    if vary:
        r_lo, r_hi = (0.06, 0.12) if size == "small" else (0.16, 0.25)
        off = 0.09
    else:
        r_lo, r_hi = (0.08, 0.11) if size == "small" else (0.17, 0.22)
        off = 0.06

    def turn():
        if vary:
            return rng.uniform(-TURN[s["shape"]], TURN[s["shape"]])
        return rng.uniform(0, 2 * math.pi) * FIXED_TURN.get(s["shape"], 0)

    objs = []
    s["pos"] = None
    if n == 1:
        cell = rng.choice(list(POSITIONS))
        s["pos"] = POSITIONS[cell]
        r = rng.uniform(r_lo, r_hi)
        cy = (cell[0] + 0.5) / 3 + rng.uniform(-off, off)
        cx = (cell[1] + 0.5) / 3 + rng.uniform(-off, off)
        cy, cx = min(max(cy, r + 0.02), 0.98 - r), min(max(cx, r + 0.02),
                                                       0.98 - r)
        objs.append((cx, cy, r, turn()))
    else:
        tries = 0
        while len(objs) < n:
            tries += 1
            if tries > 2000:        # start over: a crowded layout
                objs, tries = [], 0
            r = rng.uniform(r_lo, r_hi)
            cx, cy = rng.uniform(r + 0.02, 0.98 - r), rng.uniform(r + 0.02,
                                                                  0.98 - r)
            if all(math.hypot(cx - x, cy - y) > (r + q) * 1.15
                   for x, y, q, _ in objs):
                objs.append((cx, cy, r, turn()))
    s["objs"] = objs


def sibling(s, rng):
    """A hard negative for scene s: the same scene with one attribute
    changed - mostly the shape (same colour, layout and background) or the
    count (same shape and colour), else the colour, background or size."""
    t = dict(s)
    what = rng.choice(["shape", "shape", "count", "count", "colour", "bg",
                       "size"])
    if what == "shape":
        t["shape"] = rng.choice([x for x in SHAPES if x != s["shape"]])
        turn = TURN[t["shape"]]
        t["objs"] = [(x, y, r, rng.uniform(-turn, turn))
                     for x, y, r, _ in s["objs"]]
    elif what == "count":
        t["count"] = rng.choice([c for c in range(1, 5) if c != s["count"]])
        if t["count"] > 2:
            t["size"] = "small"
        layout(t, rng)
    elif what == "colour":
        t["colour"] = rng.choice([c for c in COLOUR_NAMES
                                  if c != s["colour"]])
        bg_tones(t, rng)
    elif what == "bg":
        t["bg"] = rng.choice([b for b in BACKGROUNDS if b != s["bg"]])
    else:
        if s["count"] > 2:
            t["count"] = rng.choice([1, 2])
        t["size"] = "large" if s["size"] == "small" else "small"
        layout(t, rng)
    return t


def hsv(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
               (v, p, q)][i]
    return [255 * r, 255 * g, 255 * b]


def shape_points(kind, cx, cy, r, rot):
    """The polygon of a shape of radius r at (cx, cy), turned by rot."""
    if kind == "square":
        pts = [(r * math.cos(math.pi / 4 + k * math.pi / 2),
                r * math.sin(math.pi / 4 + k * math.pi / 2))
               for k in range(4)]
    elif kind == "diamond":
        pts = [(0, -r), (0.7 * r, 0), (0, r), (-0.7 * r, 0)]
    elif kind == "triangle":
        pts = [(r * math.cos(-math.pi / 2 + k * 2 * math.pi / 3),
                r * 1.05 * math.sin(-math.pi / 2 + k * 2 * math.pi / 3)
                + r * 0.15) for k in range(3)]
    elif kind == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + k * math.pi / 5
            q = r if k % 2 == 0 else r * 0.45
            pts.append((q * math.cos(a), q * math.sin(a)))
    elif kind == "cross":
        w = r * 0.36
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
               (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
    else:
        raise ValueError(kind)
    c, sn = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * sn, cy + x * sn + y * c) for x, y in pts]


def render(s, size=RENDER):
    """The scene as a size x size RGB PIL image."""
    t0, t1 = [tuple(t) for t in s["tones"]]
    a, b, c = s["bgparam"]
    if s["bg"] == "gradient":
        u = np.linspace(0, 1, size)[None, :, None]
        v = np.linspace(0, 1, size)[:, None, None]
        ang = a * 2 * math.pi
        w = np.clip(0.5 + (u - 0.5) * math.cos(ang) + (v - 0.5)
                    * math.sin(ang), 0, 1)
        arr = np.array(t0)[None, None] * (1 - w) + np.array(t1)[None, None] * w
        im = Image.fromarray(arr.astype(np.uint8), "RGB")
    else:
        im = Image.new("RGB", (size, size), t0)
    d = ImageDraw.Draw(im)
    if s["bg"] == "striped":
        period = size * (0.08 + 0.08 * b)
        width = period * 0.5
        vertical, diag = a < 0.4, a > 0.75
        k = -2 * size
        while k < 2 * size:
            if diag:
                d.polygon([(k, 0), (k + width, 0), (k + width + size, size),
                           (k + size, size)], fill=t1)
            elif vertical:
                d.rectangle([k, 0, k + width - 1, size], fill=t1)
            else:
                d.rectangle([0, k, size, k + width - 1], fill=t1)
            k += period
    elif s["bg"] == "dotted":
        period = size * (0.09 + 0.07 * b)
        rad = period * (0.18 + 0.12 * c)
        off = a * period
        y = off - period
        row = 0
        while y < size + period:
            shift = period / 2 if row % 2 and \
                s.get("lattice", "offset") == "offset" else 0
            x = off - period + shift
            while x < size + period:
                d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=t1)
                x += period
            y += period
            row += 1
    elif s["bg"] == "checkered":
        cell = size * (0.1 + 0.1 * b)
        n = int(size / cell) + 2
        for i in range(n):
            for j in range(n):
                if (i + j) % 2:
                    d.rectangle([j * cell, i * cell, (j + 1) * cell - 1,
                                 (i + 1) * cell - 1], fill=t1)
    col = tuple(int(min(255, max(0, v + j))) for v, j in
                zip(COLOURS[s["colour"]], s.get("jitter", (0, 0, 0))))
    for cx, cy, r, rot in s["objs"]:
        cx, cy, r = cx * size, cy * size, r * size
        if s["shape"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        else:
            d.polygon(shape_points(s["shape"], cx, cy, r, rot), fill=col)
    return im


def to_model_input(im):
    """PIL image -> uint8 HWC at IMAGE^2, as the HF processor resizes."""
    if im.size != (IMAGE, IMAGE):
        im = im.resize((IMAGE, IMAGE), Image.BICUBIC, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


# ---- captions --------------------------------------------------------------

SYN = {
    "small": ["small", "little", "tiny"],
    "large": ["large", "big", "huge"],
    "plain": ["plain", "solid", "flat"],
    "striped": ["striped", "stripy", "lined"],
    "dotted": ["dotted", "spotted", "polka dot"],
    "checkered": ["checkered", "checkerboard", "chequered"],
    "gradient": ["gradient", "fading", "shaded"],
    "top left": ["top left", "upper left"],
    "top right": ["top right", "upper right"],
    "bottom left": ["bottom left", "lower left"],
    "bottom right": ["bottom right", "lower right"],
    "center": ["center", "middle", "centre"],
    "top": ["top"], "bottom": ["bottom"], "left": ["left"], "right": ["right"],
}
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles",
          "star": "stars", "diamond": "diamonds", "cross": "crosses"}


def pos_phrase(p, rng):
    w = rng.choice(SYN[p])
    if p == "center":
        return rng.choice(["in the " + w, "at the " + w])
    if p in ("top", "bottom"):
        return rng.choice(["at the " + w, "near the " + w])
    if p in ("left", "right"):
        return rng.choice(["on the " + w, "at the " + w])
    return rng.choice(["in the " + w, "in the " + w + " corner"])


def noun_phrase(s, rng, size=True, colour=True, count=True, article=True,
                generic=False):
    """generic: "shape(s)" or "object(s)" instead of the shape's name."""
    n = s["count"]
    words = []
    if count:
        words.append(("a" if rng.random() < 0.7 else "one") if n == 1
                     else COUNTS[n - 1])
    elif article and n == 1:
        words.append("a")
    if size:
        words.append(rng.choice(SYN[s["size"]]))
    if colour:
        words.append(s["colour"])
    if generic:
        noun = rng.choice(["shape", "object"])
        words.append(noun if n == 1 else noun + "s")
    else:
        words.append(s["shape"] if n == 1 else PLURAL[s["shape"]])
    np_ = " ".join(words)
    if np_.startswith("a ") and np_[2] in "aeiou":
        np_ = "an " + np_[2:]
    return np_


def bg_phrase(s, rng):
    w = rng.choice(SYN[s["bg"]])
    return rng.choice(["on a %s background" % w, "on %s background" % w,
                       "over a %s background" % w])


def caption(s, rng, kept=None):
    """A training caption: a random subset of the attributes, one of the
    training templates.  kept (a dict) receives which attributes it names,
    for caption_fits()."""
    keep = dict(size=rng.random() < 0.6, colour=rng.random() < 0.85,
                count=rng.random() < 0.8, pos=rng.random() < 0.6,
                bg=rng.random() < 0.6, shape=rng.random() < 0.88)
    if not keep["shape"]:           # "two red shapes": names something else
        keep["colour"] = keep["colour"] or rng.random() < 0.5
        keep["count"] = keep["count"] or not keep["colour"]
    np_ = noun_phrase(s, rng, keep["size"], keep["colour"], keep["count"],
                      generic=not keep["shape"])
    parts = [np_]
    keep["pos"] = keep["pos"] and s["pos"] is not None
    if keep["pos"]:
        parts.append(pos_phrase(s["pos"], rng))
    if keep["bg"]:
        parts.append(bg_phrase(s, rng))
    text = " ".join(parts)
    if kept is not None:
        kept.clear()
        kept.update(keep)
    return rng.choice(["", "", "a photo of ", "a picture of ",
                       "an image of "]) + text + \
        ("." if rng.random() < 0.3 else "")


CAPTION_KEYS = {"size": "size", "colour": "colour", "count": "count",
                "pos": "pos", "bg": "bg", "shape": "shape"}


def caption_fits(kept, s):
    """Whether a caption made from scene t with `kept` attributes also
    describes scene s (kept holds t's values under "vals")."""
    v = kept["vals"]
    for k in CAPTION_KEYS:
        if kept[k] and s[k] != v[k]:
            return False
    if not kept["count"] and (s["count"] == 1) != (v["count"] == 1):
        return False                # "circles" is not one circle
    return True


def paraphrase(s, rng):
    """Held-out templates (never used in training) naming every attribute,
    with words the training captions use."""
    n = s["count"]
    col, shp = s["colour"], (s["shape"] if n == 1 else PLURAL[s["shape"]])
    size = rng.choice(SYN[s["size"]])
    bgw = rng.choice(SYN[s["bg"]])
    cnt = "one" if n == 1 else COUNTS[n - 1]
    pos = (" " + pos_phrase(s["pos"], rng)) if s["pos"] else ""
    be = "is" if n == 1 else "are"
    forms = [
        "there %s %s %s %s %s%s on a %s background" % (be, cnt, size, col,
                                                       shp, pos, bgw),
        "a %s background with %s %s %s %s%s" % (bgw, cnt, size, col, shp,
                                               pos),
        "%s %s %s that %s %s%s, %s background" % (cnt, size, shp, be, col,
                                                  pos, bgw),
        "on a %s background, %s %s %s %s%s" % (bgw, cnt, size, col, shp,
                                               pos),
    ]
    return rng.choice(forms)


def full_caption(s, rng):
    """A training-template caption naming every attribute."""
    parts = [noun_phrase(s, rng)]
    if s["pos"]:
        parts.append(pos_phrase(s["pos"], rng))
    parts.append(bg_phrase(s, rng))
    return " ".join(parts)


# ---- tokenizer -------------------------------------------------------------

_TOK = None


def tokenize(text):
    global _TOK
    if _TOK is None:
        import ref_tokenize
        _TOK = ref_tokenize.SimpleTokenizer()
    return _TOK.tokenize(text)


# ---- the model (Hugging Face tensor names) ---------------------------------

def tensor_shapes(cfg=CONFIG):
    t, v, e = cfg["text"], cfg["vision"], cfg["projection_dim"]
    out = []

    def tower(pfx, c):
        d, m = c["width"], c["mlp"]
        for i in range(c["layers"]):
            p = "%s.encoder.layers.%d." % (pfx, i)
            for ln in ("layer_norm1", "layer_norm2"):
                out.append((p + ln + ".weight", [d]))
                out.append((p + ln + ".bias", [d]))
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                out.append((p + "self_attn." + proj + ".weight", [d, d]))
                out.append((p + "self_attn." + proj + ".bias", [d]))
            out.append((p + "mlp.fc1.weight", [m, d]))
            out.append((p + "mlp.fc1.bias", [m]))
            out.append((p + "mlp.fc2.weight", [d, m]))
            out.append((p + "mlp.fc2.bias", [d]))

    d = t["width"]
    out.append(("text_model.embeddings.token_embedding.weight", [VOCAB, d]))
    out.append(("text_model.embeddings.position_embedding.weight",
                [MAXPOS, d]))
    tower("text_model", t)
    out.append(("text_model.final_layer_norm.weight", [d]))
    out.append(("text_model.final_layer_norm.bias", [d]))
    d, p = v["width"], v["patch_size"]
    g = v["image_size"] // p
    out.append(("vision_model.embeddings.class_embedding", [d]))
    out.append(("vision_model.embeddings.patch_embedding.weight",
                [d, 3, p, p]))
    out.append(("vision_model.embeddings.position_embedding.weight",
                [g * g + 1, d]))
    out.append(("vision_model.pre_layrnorm.weight", [d]))
    out.append(("vision_model.pre_layrnorm.bias", [d]))
    tower("vision_model", v)
    out.append(("vision_model.post_layernorm.weight", [d]))
    out.append(("vision_model.post_layernorm.bias", [d]))
    out.append(("visual_projection.weight", [e, v["width"]]))
    out.append(("text_projection.weight", [e, t["width"]]))
    out.append(("logit_scale", []))
    return out


def init_params(torch, seed):
    g = torch.Generator().manual_seed(seed)
    P = {}
    for name, shape in tensor_shapes():
        if name == "logit_scale":
            w = torch.tensor(math.log(1 / 0.07))
        elif name.endswith("norm1.weight") or name.endswith("norm2.weight") \
                or "layernorm.weight" in name or "layrnorm.weight" in name \
                or "final_layer_norm.weight" in name:
            w = torch.ones(shape)
        elif name.endswith(".bias"):
            w = torch.zeros(shape)
        elif "embedding" in name:
            w = torch.randn(shape, generator=g) * 0.02
        else:
            w = torch.randn(shape, generator=g) * (shape[-1] ** -0.5) * \
                (0.5 if "fc2" in name or "out_proj" in name else 1.0)
            if len(shape) == 4:
                w = torch.randn(shape, generator=g) * \
                    (shape[1] * shape[2] * shape[3]) ** -0.5
        P[name] = torch.nn.Parameter(w.float())
    return P


def forward_layers(torch, W, pfx, c, x, causal):
    F = torch.nn.functional
    d, h = c["width"], c["heads"]
    hd = d // h
    B, S, _ = x.shape

    def lin(name, y):
        return F.linear(y, W[name + ".weight"], W[name + ".bias"])

    def ln(name, y):
        return F.layer_norm(y, (d,), W[name + ".weight"], W[name + ".bias"],
                            c["eps"])

    mask = None
    if causal:
        mask = torch.full((S, S), float("-inf")).triu(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        for i in range(c["layers"]):
            p = "%s.encoder.layers.%d." % (pfx, i)
            y = ln(p + "layer_norm1", x)
            q = lin(p + "self_attn.q_proj", y) * hd ** -0.5
            k = lin(p + "self_attn.k_proj", y)
            v = lin(p + "self_attn.v_proj", y)
            q, k, v = (z.view(B, S, h, hd).transpose(1, 2) for z in (q, k, v))
            a = q @ k.transpose(-1, -2)
            if mask is not None:
                a = a + mask
            a = torch.softmax(a, dim=-1)
            o = (a @ v).transpose(1, 2).reshape(B, S, d)
            x = x + lin(p + "self_attn.out_proj", o)
            y = ln(p + "layer_norm2", x)
            y = lin(p + "mlp.fc1", y)
            y = y * torch.sigmoid(1.702 * y)
            x = x + lin(p + "mlp.fc2", y)
    return x.float()


def encode_text(torch, W, ids):
    """ids: LongTensor [B, S], each row SOT ... EOT then zeros."""
    F = torch.nn.functional
    c = CONFIG["text"]
    B, S = ids.shape
    x = W["text_model.embeddings.token_embedding.weight"][ids]
    x = x + W["text_model.embeddings.position_embedding.weight"][:S]
    x = forward_layers(torch, W, "text_model", c, x, True)
    x = F.layer_norm(x, (c["width"],), W["text_model.final_layer_norm.weight"],
                     W["text_model.final_layer_norm.bias"], c["eps"])
    eot = (ids == EOT).int().argmax(dim=-1)
    e = x[torch.arange(B), eot] @ W["text_projection.weight"].T
    return F.normalize(e, dim=-1)


def encode_image(torch, W, px):
    F = torch.nn.functional
    c = CONFIG["vision"]
    d = c["width"]
    x = F.conv2d(px, W["vision_model.embeddings.patch_embedding.weight"],
                 stride=c["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    B = x.shape[0]
    cls = W["vision_model.embeddings.class_embedding"].expand(B, 1, d)
    x = torch.cat([cls, x], dim=1)
    x = x + W["vision_model.embeddings.position_embedding.weight"]
    x = F.layer_norm(x, (d,), W["vision_model.pre_layrnorm.weight"],
                     W["vision_model.pre_layrnorm.bias"], c["eps"])
    x = forward_layers(torch, W, "vision_model", c, x, False)
    pooled = F.layer_norm(x[:, 0], (d,), W["vision_model.post_layernorm.weight"],
                          W["vision_model.post_layernorm.bias"], c["eps"])
    e = pooled @ W["visual_projection.weight"].T
    return F.normalize(e, dim=-1)


def pixels(torch, u8):
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
    x = u8.permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - m) / s


def augment(torch, x, g):
    """A slightly cropped, rescaled, colour-shifted copy (per image)."""
    F = torch.nn.functional
    B = x.shape[0]
    sc = 1 - torch.rand(B, generator=g) * 0.16            # keep 84-100 %
    tx = (torch.rand(B, generator=g) * 2 - 1) * (1 - sc)
    ty = (torch.rand(B, generator=g) * 2 - 1) * (1 - sc)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sc, sc
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                      align_corners=False)
    y = y * (1 + (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.1) + \
        (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.1
    return y + torch.randn(y.shape, generator=g) * 0.03


# ---- export ----------------------------------------------------------------

def config_json():
    t, v = CONFIG["text"], CONFIG["vision"]
    tc = dict(hidden_size=t["width"], intermediate_size=t["mlp"],
              num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
              max_position_embeddings=MAXPOS, vocab_size=VOCAB,
              hidden_act=t["act"], layer_norm_eps=t["eps"],
              projection_dim=CONFIG["projection_dim"],
              bos_token_id=SOT, eos_token_id=EOT, pad_token_id=1)
    vc = dict(hidden_size=v["width"], intermediate_size=v["mlp"],
              num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
              num_channels=3, image_size=v["image_size"],
              patch_size=v["patch_size"], hidden_act=v["act"],
              layer_norm_eps=v["eps"],
              projection_dim=CONFIG["projection_dim"])
    return {"_name_or_path": "clipdex-demo", "architectures": ["CLIPModel"],
            "model_type": "clip", "projection_dim": CONFIG["projection_dim"],
            "logit_scale_init_value": 2.6592, "torch_dtype": "float16",
            "text_config": tc, "vision_config": vc}


PREPROCESSOR = {
    "crop_size": {"height": IMAGE, "width": IMAGE}, "do_center_crop": True,
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
    "do_resize": True, "image_mean": list(MEAN), "image_std": list(STD),
    "image_processor_type": "CLIPImageProcessor", "resample": 3,
    "rescale_factor": 1 / 255, "size": {"shortest_edge": IMAGE},
}


def write_safetensors(path, W, used_tokens):
    """F16, tensors in tensor_shapes() order.  Token embedding rows the
    demo never uses are written as zeros."""
    entries, blobs, off = [], [], 0
    for name, shape in tensor_shapes():
        a = W[name].detach().float().numpy().reshape(shape)
        if name == "text_model.embeddings.token_embedding.weight":
            keep = np.zeros(VOCAB, bool)
            keep[sorted(used_tokens)] = True
            a = a * keep[:, None]
        raw = a.astype("<f2").tobytes()
        entries.append('"%s":{"dtype":"F16","shape":[%s],"data_offsets":'
                       '[%d,%d]}' % (name, ",".join(str(s) for s in shape),
                                     off, off + len(raw)))
        blobs.append(raw)
        off += len(raw)
    header = ('{"__metadata__":{"format":"pt","source":"tools/train_demo.py"},'
              + ",".join(entries) + "}").encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F16": "<f2", "F32": "<f4"}[v["dtype"]]
        out[k] = np.frombuffer(data[a:b], dt).astype(np.float32).reshape(
            v["shape"])
    return out


def all_tokens():
    """Every token id any caption or query template can produce."""
    words = set()
    for table in (SHAPES, list(PLURAL.values()), COLOUR_NAMES, COUNTS):
        words.update(table)
    for v in SYN.values():
        for w in v:
            words.update(w.split())
    words.update("a an one in the at on near over of with there is are that "
                 "background corner photo picture image shape shapes object "
                 "objects some , .".split())
    ids = {SOT, EOT}
    for w in words:
        ids.update(tokenize(w)[1:-1])
    return ids


# ---- training --------------------------------------------------------------

def make_dataset(n, seed):
    """n scenes in pairs: an even index is a scene, the odd one after it its
    sibling() (a hard negative that differs in one attribute)."""
    rng = random.Random(seed)
    scenes = []
    while len(scenes) < n:
        s = sample_scene(rng, vary=True)
        scenes += [s, sibling(s, rng)]
    scenes = scenes[:n - n % 2]
    imgs = np.stack([to_model_input(render(s)) for s in scenes])
    return scenes, imgs


def group_scenes(scenes, pos_groups=False):
    """Indexes of scenes (even ones: not siblings) by colour, and of single
    objects by colour (and, with pos_groups, of single objects by colour
    and shape: captions must then tell positions apart)."""
    g = {}
    for i in range(0, len(scenes), 2):
        s = scenes[i]
        g.setdefault(("colour", s["colour"]), []).append(i)
        if s["count"] == 1:
            g.setdefault(("single", s["colour"]), []).append(i)
            if pos_groups:
                g.setdefault(("pos", s["colour"], s["shape"]), []).append(i)
    return g


def hard_batch(scenes, by_key, rng, n, group=8):
    """n scene indexes in groups of `group`: half scenes that share their
    colour (half of the groups also hold single objects only), half their
    siblings (the same scene with another shape, count, colour, background
    or size): captions must then tell shapes, counts, positions and
    backgrounds apart, not just colours."""
    out = []
    keys = sorted(by_key)
    while len(out) < n:
        members = by_key[rng.choice(keys)]
        for i in rng.sample(members, min(group // 2, len(members))):
            if len(out) + 2 <= n:
                out += [i, i + 1]
    return out


ATTR_VALUES = {"shape": SHAPES, "colour": COLOUR_NAMES, "count": COUNTS,
               "bg": BACKGROUNDS, "size": SIZES, "pos": POS_NAMES}


def attribute_texts(attr, rng):
    """One text per value of attribute attr, naming only that attribute,
    in one phrasing drawn at random (a training template: prefix, generic
    noun, synonyms, an optional full stop)."""
    pre = rng.choice(["", "a photo of ", "a picture of ", "an image of "])
    end = "." if rng.random() < 0.3 else ""
    noun = rng.choice(["shape", "object"])
    out = []
    for v in ATTR_VALUES[attr]:
        if attr == "shape":
            t = "a " + v
        elif attr == "colour":
            t = ("an " if v[0] in "aeiou" else "a ") + v + " " + noun
        elif attr == "count":
            t = v + " " + noun + ("" if v == "one" else "s")
        elif attr == "bg":
            t = "a %s %s" % (noun, bg_phrase(dict(bg=v), rng))
        elif attr == "size":
            t = "a %s %s" % (rng.choice(SYN[v]), noun)
        else:
            t = "a %s %s" % (noun, pos_phrase(v, rng))
        out.append(pre + t + end)
    return out


def attribute_loss(torch, W, ei, scenes, idx, scale, rng, shape_weight=1.0):
    """Each image against the texts of every value of each attribute
    (exhaustive swapped-attribute negatives: "a circle" against "a square",
    "a star", ...; "two shapes" against "one shape", ...): the mean cross
    entropy over the attributes.  Position counts for single objects
    only.  shape_weight weights the shape's term (the hardest to learn)."""
    F = torch.nn.functional
    losses = []
    for attr, values in ATTR_VALUES.items():
        rows = [k for k, i in enumerate(idx)
                if attr != "pos" or scenes[i]["pos"] is not None]
        if attr == "size":
            rows = [k for k in rows if scenes[idx[k]]["count"] <= 2]
        if not rows:
            continue
        key = {"count": lambda s: COUNTS[s["count"] - 1]}.get(
            attr, lambda s: s[attr])
        lab = torch.tensor([values.index(key(scenes[idx[k]])) for k in rows])
        et = encode_text(torch, W, batch_ids(torch, attribute_texts(attr,
                                                                    rng)))
        w = shape_weight if attr == "shape" else 1.0
        losses.append((w, F.cross_entropy(scale * ei[rows] @ et.T, lab)))
    return sum(w * x for w, x in losses) / sum(w for w, _ in losses)


def attribute_labels(torch, scenes):
    """{attribute: LongTensor of each scene's value index}; -100 where the
    attribute says nothing (the position of several objects, the size of
    three or four, which are always small)."""
    out = {}
    for attr, values in ATTR_VALUES.items():
        lab = []
        for s in scenes:
            if attr == "pos" and s["pos"] is None or \
                    attr == "size" and s["count"] > 2:
                lab.append(-100)
            elif attr == "count":
                lab.append(s["count"] - 1)
            else:
                lab.append(values.index(s[attr]))
        out[attr] = torch.tensor(lab)
    return out


def init_heads(torch, seed):
    """One row per attribute value in the image embedding's space: the
    linear heads of supervised training (never exported)."""
    g = torch.Generator().manual_seed(seed)
    return {a: torch.nn.Parameter(torch.randn(len(v), CONFIG["projection_dim"],
                                              generator=g))
            for a, v in ATTR_VALUES.items()}


def head_loss(torch, H, ei, lab, shape_weight):
    """Cross entropy of each attribute's head on the normalised image
    embeddings ei, as cosine classifiers (unit rows, scale 20: the way a
    text prompt scores an image), the shape's term weighted."""
    F = torch.nn.functional
    total, wsum = 0.0, 0.0
    for attr, h in H.items():
        if bool((lab[attr] == -100).all()):
            continue
        w = shape_weight if attr == "shape" else 1.0
        total = total + w * F.cross_entropy(
            20.0 * ei @ F.normalize(h, dim=1).T, lab[attr], ignore_index=-100)
        wsum += w
    return total / wsum


def pretrain(torch, W, H, args):
    """Supervised training of the vision tower alone on fresh scenes (each
    step renders its own): the attribute heads' cross entropy, or with
    --pretrain-text (a model that already has a text tower, --init) the
    attribute term against that tower's texts, which stays frozen.  A
    small ViT learns shape from this many times faster than from
    captions, where colour alone already tells most pairs apart."""
    rng = random.Random(args.seed + 3)
    params = [p for k, p in W.items() if k.startswith("vision_model") or
              k == "visual_projection.weight"] + list(H.values())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=0.05)
    t0, warm, n = time.time(), 200, args.pretrain_steps
    hrng = random.Random(args.seed + 5)
    held = [sample_scene(hrng, vary=True) for _ in range(300)]
    held_u8 = torch.from_numpy(np.stack([to_model_input(render(s))
                                         for s in held]))
    held_lab = attribute_labels(torch, held)
    for step in range(n):
        lr = args.lr * min(1.0, (step + 1) / warm) * \
            0.5 * (1 + math.cos(math.pi * step / n))
        for gr in opt.param_groups:
            gr["lr"] = lr
        scenes = [sample_scene(rng, vary=True) for _ in range(args.batch)]
        u8 = torch.from_numpy(np.stack([to_model_input(render(s))
                                        for s in scenes]))
        ei = encode_image(torch, W, pixels(torch, u8))
        if args.pretrain_text:
            scale = W["logit_scale"].clamp(max=math.log(100)).exp()
            loss = attribute_loss(torch, W, ei, scenes, range(len(scenes)),
                                  scale.detach(), rng, args.shape_weight)
        else:
            loss = head_loss(torch, H, ei, attribute_labels(torch, scenes),
                             args.shape_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == n - 1:
            print("pretrain %d/%d loss %.3f lr %.2e %.0f s" % (
                step, n, loss.item(), lr, time.time() - t0), flush=True)
        if args.pretrain_text and (step % 500 == 499 or step == n - 1):
            with torch.no_grad():
                print("pretrain zero-shot:", zero_shot_figures(torch, W, 300),
                      flush=True)
        elif step % 500 == 499 or step == n - 1:
            with torch.no_grad():      # the heads on 300 held-out scenes
                eh = encode_image(torch, W, pixels(torch, held_u8))
                acc = {a: ((eh @ H[a].T).argmax(1) == held_lab[a])
                       .float()[held_lab[a] != -100].mean().item()
                       for a in ("shape", "colour", "count", "bg")}
            print("pretrain heads:", " ".join("%s %.3f" % kv
                                              for kv in acc.items()),
                  flush=True)


def batch_ids(torch, texts):
    seqs = [tokenize(t) for t in texts]
    S = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), S, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids


def native_bf16():
    """Whether the CPU multiplies bf16 natively (AVX512_BF16 or AMX): there
    bf16 autocast roughly halves a step; elsewhere it is emulated, slower
    than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def train(args):
    import torch
    F = torch.nn.functional
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    global BF16
    BF16 = args.precision == "bf16" or \
        args.precision == "auto" and native_bf16()
    print("training precision: %s" % ("bf16 autocast in the blocks"
                                      if BF16 else "float32"), flush=True)
    t_start = time.time()
    scenes, imgs = make_dataset(args.n_train, args.seed)
    print("rendered %d scenes in %.0f s" % (len(scenes), time.time() - t_start),
          flush=True)
    W = init_params(torch, args.seed)
    if args.init:               # go on from a model folder's weights
        for k, v in read_safetensors(os.path.join(
                args.init, "model.safetensors")).items():
            if k == "text_model.embeddings.token_embedding.weight":
                keep = np.abs(v).sum(1) > 0     # rows the demo uses
                W[k].data[torch.from_numpy(keep)] = torch.from_numpy(v[keep])
            else:
                W[k].data.copy_(torch.from_numpy(v).view(W[k].shape))
    H = init_heads(torch, args.seed + 4)
    if args.pretrain_steps:
        pretrain(torch, W, H, args)
        if args.checkpoint:
            export(W, args.out + ".pretrained", args, time.time() - t_start,
                   0, 0.0)

    def vision(k):
        return k.startswith("vision_model") or k == "visual_projection.weight"

    def decays(p, k):
        return p.dim() >= 2 and "embedding" not in k
    groups = []         # (params, weight decay, share of the rate)
    for vis in (False, True):
        for dec in (True, False):
            ps = [p for k, p in W.items() if vision(k) == vis and
                  decays(p, k) == dec]
            groups.append(dict(params=ps, weight_decay=0.05 if dec else 0.0,
                               share=args.vision_lr if vis else 1.0))
    if args.sup_weight > 0:
        groups.append(dict(params=list(H.values()), weight_decay=0.0,
                           share=1.0))
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    rng = random.Random(args.seed + 1)
    g = torch.Generator().manual_seed(args.seed + 2)
    u8 = torch.from_numpy(imgs)
    by_key = group_scenes(scenes, args.pos_groups)
    warm = max(1, args.steps // 20)
    log = []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / warm) * \
            0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))
        for gr in opt.param_groups:
            gr["lr"] = lr * gr["share"]
        idx = hard_batch(scenes, by_key, rng, args.batch)
        x = pixels(torch, u8[idx])
        texts, kepts = [], []
        for i in idx:
            k = {}
            texts.append(caption(scenes[i], rng, k))
            k["vals"] = scenes[i]
            kepts.append(k)
        ids = batch_ids(torch, texts)
        n_aug = args.batch // 4
        xa = augment(torch, x[:n_aug], g)
        ei = encode_image(torch, W, torch.cat([x, xa]))
        ei, ea = ei[:args.batch], ei[args.batch:]
        et = encode_text(torch, W, ids)
        scale = W["logit_scale"].clamp(max=math.log(100)).exp()
        logits = scale * ei @ et.T
        # a caption that also describes another image of the batch is not
        # a negative for it
        same = torch.tensor([[caption_fits(kepts[j], scenes[i])
                              for j in range(len(idx))]
                             for i in range(len(idx))])
        logits_t = logits.masked_fill(same & ~torch.eye(len(texts),
                                                         dtype=torch.bool),
                                      float("-inf"))
        lab = torch.arange(args.batch)
        loss_t = (F.cross_entropy(logits_t, lab) +
                  F.cross_entropy(logits_t.T, lab)) / 2
        if args.image_hard:
            # each copy against the whole batch (its colour group-mates are
            # hard negatives), and each original against the copies
            li = scale * ea @ ei.T
            la = torch.arange(n_aug)
            loss_i = (F.cross_entropy(li, la) +
                      F.cross_entropy(li[:, :n_aug].T, la)) / 2
        else:
            li = scale * ea @ ei[:n_aug].T
            la = torch.arange(n_aug)
            loss_i = (F.cross_entropy(li, la) + F.cross_entropy(li.T, la)) / 2
        loss = loss_t + args.image_weight * loss_i
        if args.attr_weight > 0:
            loss_a = attribute_loss(torch, W, ei, scenes, idx, scale, rng,
                                    args.shape_weight)
            loss = loss + args.attr_weight * loss_a
        else:
            loss_a = torch.tensor(0.0)
        if args.sup_weight > 0:
            loss = loss + args.sup_weight * head_loss(
                torch, H, ei, attribute_labels(torch, [scenes[i] for i in idx]),
                args.shape_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_start
            print("step %d/%d loss %.3f (text %.3f image %.3f attributes "
                  "%.3f) scale %.1f lr %.2e %.0f s" % (
                      step, args.steps, loss.item(), loss_t.item(),
                      loss_i.item(), loss_a.item(), scale.item(), lr, el),
                  flush=True)
            log.append((step, loss.item()))
        if args.eval_every and step % args.eval_every == args.eval_every - 1:
            with torch.no_grad():
                print("zero-shot:", zero_shot_figures(torch, W, 300),
                      flush=True)
        if args.checkpoint and step % 500 == 499:
            export(W, args.out, args, time.time() - t_start, step + 1,
                   loss.item())
    export(W, args.out, args, time.time() - t_start, args.steps, loss.item())


def export(W, out, args, secs, steps, loss):
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors.tmp"), W,
                      all_tokens())
    os.replace(os.path.join(out, "model.safetensors.tmp"),
               os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_json(), f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "TRAINING.txt"), "w") as f:
        f.write("Made by: /usr/bin/python3 tools/train_demo.py "
                "train --steps %d --threads %d --batch %d --lr %g --seed %d "
                "--n-train %d%s\n" % (args.steps, args.threads, args.batch,
                                      args.lr, args.seed, args.n_train,
                                      (" --pos-groups" if args.pos_groups
                                       else "") +
                                      (" --image-hard" if args.image_hard
                                       else "") +
                                      (" --image-weight %g" % args.image_weight
                                       if args.image_weight != 0.5
                                       else "") +
                                      (" --attr-weight %g" % args.attr_weight
                                       if args.attr_weight != 1.0
                                       else "") +
                                      (" --shape-weight %g" % args.shape_weight
                                       if args.shape_weight != 1.0
                                       else "") +
                                      (" --patch %d" % args.patch
                                       if args.patch != PATCH else "") +
                                      (" --init %s" % args.init
                                       if args.init else "") +
                                      (" --pretrain-steps %d" %
                                       args.pretrain_steps
                                       if args.pretrain_steps else "") +
                                      (" --pretrain-text"
                                       if args.pretrain_text else "") +
                                      (" --sup-weight %g" % args.sup_weight
                                       if args.sup_weight else "") +
                                      (" --vision-lr %g" % args.vision_lr
                                       if args.vision_lr != 1.0 else "")))
        f.write("Steps done: %d; final batch loss %.3f; %.0f s on %d CPU "
                "thread(s), %s, torch %s.\n" % (
                    steps, loss, secs, args.threads,
                    "bf16 autocast" if BF16 else "float32",
                    __import__("torch").__version__))
        f.write("Text tokens outside the demo vocabulary have zero "
                "embeddings.\n")


# ---- held-out evaluation ---------------------------------------------------

FAMILIES = ["shape", "colour", "count", "position", "background", "caption",
            "paraphrase"]


def relevant_fn(fam, q):
    keys = {"shape": ["shape"], "colour": ["shape", "colour"],
            "count": ["shape", "count"], "position": ["shape", "count", "pos"],
            "background": ["shape", "bg"],
            "caption": ["shape", "colour", "size", "count", "pos", "bg"],
            "paraphrase": ["shape", "colour", "size", "count", "pos",
                           "bg"]}[fam]
    return lambda s: all(s[k] == q[k] for k in keys)


def query_text(fam, s, rng):
    n = s["count"]
    shp = s["shape"] if n == 1 else PLURAL[s["shape"]]
    if fam == "shape":
        return "a " + s["shape"] if s["shape"][0] not in "aeiou" else \
            "an " + s["shape"]
    if fam == "colour":
        return noun_phrase(dict(s, count=1), rng, size=False, count=False)
    if fam == "count":
        return "%s %s" % ("one" if n == 1 else COUNTS[n - 1], shp)
    if fam == "position":
        return "a %s %s" % (s["shape"], pos_phrase(s["pos"], rng))
    if fam == "background":
        return "%s %s" % (noun_phrase(dict(s, count=1), rng, size=False,
                                      colour=False, count=False),
                          bg_phrase(s, rng))
    if fam == "caption":
        return full_caption(s, rng)
    return paraphrase(s, rng)


def save_copy(im, kind, path_noext):
    if kind == "jpeg":
        p = path_noext + ".jpg"
        im.save(p, quality=40)
    elif kind == "resized":
        p = path_noext + ".png"
        im.resize((88, 88), Image.BICUBIC).save(p)
    else:                       # cropped: 6 % off each side, JPEG 85
        p = path_noext + ".jpg"
        m = int(RENDER * 0.06)
        im.crop((m, m, RENDER - m, RENDER - m)).save(p, quality=85)
    return p


def render_eval(d, n=1000, n_queries=60, n_copies=200, seed=777):
    """The held-out set: n scenes, copies, queries; d/eval.json."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(d, "img"), exist_ok=True)
    scenes = [sample_scene(rng) for _ in range(n)]
    files = []
    for i, s in enumerate(scenes):
        p = os.path.join("img", "%04d.png" % i)
        render(s).save(os.path.join(d, p))
        files.append(p)
    copies = []
    for i in range(n_copies):
        im = Image.open(os.path.join(d, files[i])).convert("RGB")
        for kind in ("jpeg", "resized", "cropped"):
            p = save_copy(im, kind, os.path.join(d, "img", "%04d_%s" % (i,
                                                                        kind)))
            copies.append(dict(file=os.path.relpath(p, d), of=i, kind=kind))
    queries = []
    for fam in FAMILIES:
        picked = 0
        for i in rng.sample(range(n), n):
            s = scenes[i]
            if fam == "position" and s["pos"] is None:
                continue
            text = query_text(fam, s, rng)
            rel = relevant_fn(fam, s)
            queries.append(dict(family=fam, text=text,
                                relevant=[j for j in range(n)
                                          if rel(scenes[j])]))
            picked += 1
            if picked == n_queries:
                break
    meta = dict(images=files, copies=copies, queries=queries,
                scenes=[{k: s[k] for k in ("shape", "colour", "size",
                                           "count", "pos", "bg")}
                        for s in scenes])
    with open(os.path.join(d, "eval.json"), "w") as f:
        json.dump(meta, f)
    return meta


def recall_table(sims_by_family, ks=(1, 5, 10)):
    """{family: (list of similarity rows, list of relevant sets)} ->
    {family: [recall@k...] + [precision@10]}."""
    out = {}
    for fam, (rows, rels) in sims_by_family.items():
        hits = [0] * len(ks)
        prec = 0.0
        for r, rel in zip(rows, rels):
            order = np.argsort(-r, kind="stable")
            rs = set(rel)
            for j, k in enumerate(ks):
                hits[j] += any(int(o) in rs for o in order[:k])
            prec += sum(int(o) in rs for o in order[:10]) / 10
        out[fam] = [h / len(rows) for h in hits] + [prec / len(rows)]
    return out


def evaluate(args):
    """PyTorch figures on the exported F16 weights (float64 forward of
    tools/ref_clip.py), written to DIR/torch.json with the embeddings."""
    import torch
    import ref_clip
    import ref_images
    torch.set_num_threads(args.threads)
    d = args.dir
    meta = render_eval(d) if not os.path.exists(os.path.join(
        d, "eval.json")) else json.load(open(os.path.join(d, "eval.json")))
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in
         read_safetensors(os.path.join(args.model,
                                       "model.safetensors")).items()}
    r = dict(text=CONFIG["text"], vision=CONFIG["vision"])

    def img_emb(paths):
        out = []
        for i in range(0, len(paths), 100):
            px = []
            for p in paths[i:i + 100]:
                a = ref_images.hf_resize_crop(ref_images.pil_rgb(
                    os.path.join(d, p)), IMAGE, IMAGE, IMAGE)
                x = a.astype(np.float64) / 255.0
                x = (x - np.array(MEAN)) / np.array(STD)
                px.append(x.transpose(2, 0, 1))
            out.append(ref_clip.vision_forward(
                W, r, torch.from_numpy(np.stack(px))).numpy())
        return np.concatenate(out)

    ie = img_emb(meta["images"])
    ce = img_emb([c["file"] for c in meta["copies"]])
    te = []
    for q in meta["queries"]:
        ids = tokenize(q["text"])
        te.append(ref_clip.text_forward(W, r, [ids]).numpy()[0])
    te = np.stack(te)
    res = figures(meta, ie, ce, te)
    ie.astype("<f4").tofile(os.path.join(d, "torch_images.f32"))
    ce.astype("<f4").tofile(os.path.join(d, "torch_copies.f32"))
    te.astype("<f4").tofile(os.path.join(d, "torch_texts.f32"))
    with open(os.path.join(d, "torch.json"), "w") as f:
        json.dump(res, f, indent=1)
    print_figures("PyTorch (float64, F16 weights)", res)


def figures(meta, ie, ce, te):
    fams = {}
    for q, e in zip(meta["queries"], te):
        rows, rels = fams.setdefault(q["family"], ([], []))
        rows.append(ie @ e)
        rels.append(q["relevant"])
    res = {"text": recall_table(fams)}
    kinds = {}
    for c, e in zip(meta["copies"], ce):
        rows, rels = kinds.setdefault(c["kind"], ([], []))
        rows.append(ie @ e)
        rels.append([c["of"]])
    res["image"] = recall_table(kinds)
    return res


def print_figures(title, res):
    print(title)
    print("  %-12s %6s %6s %6s %6s" % ("text->image", "R@1", "R@5", "R@10",
                                        "P@10"))
    for k, v in res["text"].items():
        print("  %-12s %6.3f %6.3f %6.3f %6.3f" % (k, *v))
    print("  %-12s %6s %6s %6s" % ("image->image", "R@1", "R@5", "R@10"))
    for k, v in res["image"].items():
        print("  %-12s %6.3f %6.3f %6.3f" % (k, *v[:3]))


# ---- zero-shot classification ---------------------------------------------

# The label sets and prompts of the zero-shot figures (tests/demo_zeroshot.c
# and bench/classify_eval.c use the same ones).
ZERO_SHOT = [
    ("shape", SHAPES, "a photo of a {}."),
    ("colour", COLOUR_NAMES, "a photo of a {} shape."),
    ("count", ["one shape", "two shapes", "three shapes", "four shapes"],
     "a photo of {}."),
    ("background", BACKGROUNDS, "a photo of a shape on a {} background."),
]


def zero_shot_figures(torch, W, n=600, seed=31337):
    """Zero-shot top-1 accuracy per label set on n fresh scenes (this
    renderer, another seed): {set: accuracy}."""
    rng = random.Random(seed)
    scenes = [sample_scene(rng, vary=True) for _ in range(n)]
    u8 = torch.from_numpy(np.stack([to_model_input(render(s))
                                    for s in scenes]))
    truth = dict(shape=[s["shape"] for s in scenes],
                 colour=[s["colour"] for s in scenes],
                 count=[s["count"] - 1 for s in scenes],
                 background=[s["bg"] for s in scenes])
    out = {}
    with torch.no_grad():
        ei = torch.cat([encode_image(torch, W, pixels(torch, u8[i:i + 200]))
                        for i in range(0, n, 200)])
        for name, labels, tmpl in ZERO_SHOT:
            et = encode_text(torch, W, batch_ids(
                torch, [tmpl.replace("{}", lb) for lb in labels]))
            pred = (ei @ et.T).argmax(dim=1).tolist()
            t = truth[name]
            if name != "count":
                t = [labels.index(v) for v in t]
            out[name] = sum(int(p == q) for p, q in zip(pred, t)) / n
    return out


def zero_shot(args):
    import torch
    torch.set_num_threads(args.threads)
    W = {k: torch.from_numpy(v) for k, v in
         read_safetensors(os.path.join(args.model,
                                       "model.safetensors")).items()}
    res = zero_shot_figures(torch, W, args.n)
    print("zero-shot top-1 on %d fresh scenes: %s" % (args.n, " ".join(
        "%s %.3f" % kv for kv in res.items())))


# ---- demo photo folders ----------------------------------------------------

# What a render folder's seed gives changes with the renderer: bump this
# when render(), sample_scene() or the captions change, so that
# `render --if-stale` (make demo) renders an old folder again.
RENDERER = 2


def render_folder(args):
    """N scenes as JPEG photos, D of them with a near-duplicate copy;
    with --if-stale nothing when DIR/scenes.json says it was made by this
    renderer with these arguments."""
    made = dict(renderer=RENDERER, n=args.n, dupes=args.dupes,
                seed=args.seed, size=args.size)
    if args.if_stale:
        try:
            with open(os.path.join(args.dir, "scenes.json")) as f:
                if json.load(f).get("made_by") == made:
                    return
        except (OSError, ValueError, AttributeError):
            pass
    rng = random.Random(args.seed)
    os.makedirs(args.dir, exist_ok=True)
    listing = []
    scenes = [sample_scene(rng) for _ in range(args.n)]
    for i, s in enumerate(scenes):
        im = render(s, args.size)
        name = "scene_%04d.jpg" % i
        im.save(os.path.join(args.dir, name), quality=92)
        listing.append(dict(file=name, caption=full_caption(s, rng),
                            **{k: s[k] for k in ("shape", "colour", "size",
                                                 "count", "pos", "bg")}))
    dupes = []
    for i in rng.sample(range(args.n), args.dupes):
        im = Image.open(os.path.join(args.dir, listing[i]["file"]))
        kind = ["jpeg", "resized", "cropped"][len(dupes) % 3]
        name = "copy_%04d_%s" % (i, kind)
        if kind == "jpeg":
            im.save(os.path.join(args.dir, name + ".jpg"), quality=40)
            name += ".jpg"
        elif kind == "resized":
            sz = args.size * 3 // 4
            im.resize((sz, sz), Image.BICUBIC).save(
                os.path.join(args.dir, name + ".png"))
            name += ".png"
        else:
            m = args.size * 6 // 100
            im.crop((m, m, args.size - m, args.size - m)).save(
                os.path.join(args.dir, name + ".jpg"), quality=85)
            name += ".jpg"
        dupes.append(dict(file=name, of=listing[i]["file"], kind=kind))
    with open(os.path.join(args.dir, "scenes.json"), "w") as f:
        json.dump(dict(made_by=made, scenes=listing, duplicates=dupes), f,
                  indent=0)
        f.write("\n")


def average(args):
    """--out DIR: the mean of the weights of the model folders in
    args.models (a "model soup" of runs from one start), with the first
    folder's config."""
    import shutil
    import torch
    ws = [read_safetensors(os.path.join(m, "model.safetensors"))
          for m in args.models]
    W = {k: torch.from_numpy(np.asarray(sum(w[k] for w in ws) / len(ws),
                                        dtype=np.float32)) for k in ws[0]}
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), W,
                      all_tokens())
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(os.path.join(args.models[0], name),
                    os.path.join(args.out, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["train", "eval", "render", "sample", "zeroshot",
                             "average"])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "models",
                                                  "demo"))
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models",
                                                    "demo"))
    ap.add_argument("--dir")
    ap.add_argument("models", nargs="*", help="average: model folders")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                    default="auto", help="train: the transformer blocks' "
                    "precision (auto: bf16 where the CPU has it natively)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--dupes", type=int, default=15)
    ap.add_argument("--if-stale", action="store_true",
                    help="render: only when DIR was not rendered by this "
                    "renderer with these arguments")
    ap.add_argument("--size", type=int, default=RENDER)
    ap.add_argument("--checkpoint", action="store_true")
    ap.add_argument("--pos-groups", action="store_true")
    ap.add_argument("--image-hard", action="store_true")
    ap.add_argument("--image-weight", type=float, default=0.5)
    ap.add_argument("--attr-weight", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=0)
    ap.add_argument("--shape-weight", type=float, default=1.0)
    ap.add_argument("--patch", type=int, default=PATCH,
                    help="vision patch size (64 must divide by it)")
    ap.add_argument("--init", help="start from this model folder's weights")
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="supervised steps of the vision tower first")
    ap.add_argument("--pretrain-text", action="store_true",
                    help="pretrain against the (frozen) text tower's "
                    "attribute texts instead of heads (with --init)")
    ap.add_argument("--sup-weight", type=float, default=0.0,
                    help="the supervised heads' term while training CLIP")
    ap.add_argument("--vision-lr", type=float, default=1.0,
                    help="the vision tower's share of the rate (CLIP phase)")
    args = ap.parse_intermixed_args()
    CONFIG["vision"]["patch_size"] = args.patch
    # a model read (eval, zeroshot, average) has its own patch size
    read = {"eval": args.model, "zeroshot": args.model,
            "average": args.models[0] if args.models else None}
    if read.get(args.cmd):
        with open(os.path.join(read[args.cmd], "config.json")) as f:
            CONFIG["vision"]["patch_size"] = \
                json.load(f)["vision_config"]["patch_size"]
    if args.cmd == "train":
        train(args)
    elif args.cmd == "eval":
        evaluate(args)
    elif args.cmd == "render":
        render_folder(args)
    elif args.cmd == "zeroshot":
        zero_shot(args)
    elif args.cmd == "average":
        average(args)
    else:                           # a few scenes and captions to look at
        rng = random.Random(args.seed)
        os.makedirs(args.dir, exist_ok=True)
        for i in range(args.n):
            s = sample_scene(rng)
            render(s).save(os.path.join(args.dir, "%03d.png" % i))
            print(i, "|", caption(s, rng), "|", full_caption(s, rng), "|",
                  paraphrase(s, rng))


if __name__ == "__main__":
    main()
