#!/usr/bin/python3
"""Reference fixtures for the CLIP encoders (tests/encoder_model.c).

For each recipe (a small random CLIP model in Hugging Face layout) this
script:
  1. generates every weight with a deterministic generator that the C test
     helper tests/testmodel.h reproduces bit for bit (splitmix64 over the
     tensor name's FNV-1a hash and the element index, scaled in float32,
     rounded to the recipe's dtype with round-to-nearest-even);
  2. writes config.json, model.safetensors (and preprocessor_config.json)
     to a temporary folder, exactly as the C writer does;
  3. runs an independent CLIP forward in PyTorch (float64), written here
     from transformers' modeling_clip semantics (transformers is not
     needed), on token id sequences and on deterministic pixel tensors;
  4. writes tests/fixtures/models/<recipe>.json: the recipe, config.json,
     the sha256 of model.safetensors, the ids and the expected L2-normalised
     embeddings.

Run once with Debian's python3-torch:  tools/ref_clip.py [outdir]
"""
import hashlib
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch

M64 = (1 << 64) - 1
SOT, EOT = 49406, 49407

RECIPES = [
    dict(name="b32_quick_f32", seed=1, dtype="F32", layout="full",
         position_ids=True, projection_dim=48,
         text=dict(width=64, layers=2, heads=4, mlp=256, act="quick_gelu",
                   eps=1e-5),
         vision=dict(width=64, layers=2, heads=4, mlp=256, act="quick_gelu",
                     eps=1e-5, image_size=224, patch_size=32),
         preprocessor=None),
    dict(name="b16_gelu_f16", seed=2, dtype="F16", layout="dict",
         position_ids=False, projection_dim=40,
         text=dict(width=32, layers=2, heads=2, mlp=128, act="gelu",
                   eps=1e-6),
         vision=dict(width=48, layers=2, heads=3, mlp=192, act="gelu",
                     eps=1e-6, image_size=224, patch_size=16),
         preprocessor={"size": 224, "crop_size": 224,
                       "do_center_crop": True}),
    # Sparse layout: absent fields take transformers' defaults (text
    # vocab 49408, 77 positions, eps 1e-5; vision quick_gelu, 3 channels).
    dict(name="b16_mixed_bf16_336", seed=3, dtype="BF16", layout="sparse",
         position_ids=True, projection_dim=32,
         text=dict(width=48, layers=2, heads=4, mlp=96, act="gelu",
                   eps=1e-5),
         vision=dict(width=32, layers=2, heads=2, mlp=128, act="quick_gelu",
                     eps=1e-5, image_size=336, patch_size=16),
         preprocessor={"size": {"shortest_edge": 336},
                       "crop_size": {"height": 336, "width": 336},
                       "image_mean": [0.5, 0.5, 0.5],
                       "image_std": [0.25, 0.5, 0.75]}),
]
VOCAB, MAXPOS = 49408, 77
N_IMAGES = 3
PIXEL_SCALE = 0.5
COARSE, COARSE_SCALE = 4, 1.5


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & M64
    return h


def splitmix64(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        z = x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed, name, n):
    """n float32 values in [-1, 1): ((u >> 40) * 2^-24) * 2 - 1, exact."""
    base = np.uint64((seed ^ fnv1a64(name)) & M64)
    with np.errstate(over="ignore"):
        x = base + np.arange(n, dtype=np.uint64)
    k = (splitmix64(x) >> np.uint64(40)).astype(np.float32)
    return k * np.float32(2.0 ** -23) - np.float32(1.0)


def gen(seed, name, shape, scale, offset):
    n = int(np.prod(shape)) if len(shape) else 1
    v = uniform(seed, name, n)
    w = v * np.float32(scale)          # float32 multiply, rounded
    w = w + np.float32(offset)         # float32 add, rounded
    return w.reshape(shape)


def round_dtype(a, dtype):
    """float32 array -> (bytes, float32 values as stored)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes(), a
    if dtype == "F16":
        h = a.astype(np.float16)       # round to nearest even
        return h.astype("<f2").tobytes(), h.astype(np.float32)
    if dtype == "BF16":
        bits = a.view(np.uint32).astype(np.uint64)
        r = ((bits >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
        bf = ((bits + r) >> np.uint64(16)).astype(np.uint16)
        back = (bf.astype(np.uint32) << np.uint32(16)).view(np.float32)
        return bf.astype("<u2").tobytes(), back.reshape(a.shape)
    raise ValueError(dtype)


def fscale(fan_in, gain=1.5):
    """float32(gain / sqrt(fan_in)), computed in double as C does."""
    return float(np.float32(gain / math.sqrt(fan_in)))


def tower_specs(specs, pfx, c):
    """Appends the encoder layers' (name, shape, scale, offset) to specs:
    the same names and scales in CLIP and SigLIP (tools/ref_siglip.py)."""
    d, m = c["width"], c["mlp"]
    for i in range(c["layers"]):
        p = "%s.encoder.layers.%d." % (pfx, i)
        for ln in ("layer_norm1", "layer_norm2"):
            specs.append((p + ln + ".weight", [d], 0.3, 1.0))
            specs.append((p + ln + ".bias", [d], 0.1, 0.0))
        # q and k 4x larger: peaked attention, so that different
        # inputs get clearly different embeddings
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            gain = 6.0 if proj in ("q_proj", "k_proj") else 1.5
            specs.append((p + "self_attn." + proj + ".weight", [d, d],
                          fscale(d, gain), 0.0))
            specs.append((p + "self_attn." + proj + ".bias", [d],
                          0.1, 0.0))
        specs.append((p + "mlp.fc1.weight", [m, d], fscale(d), 0.0))
        specs.append((p + "mlp.fc1.bias", [m], 0.1, 0.0))
        specs.append((p + "mlp.fc2.weight", [d, m], fscale(m), 0.0))
        specs.append((p + "mlp.fc2.bias", [d], 0.1, 0.0))


def text_specs(specs, t, vocab, max_positions):
    """The text model's tensors up to its final layer norm, the same in
    every family (tests/testmodel.h's tm_text_specs).  Shared with
    tools/ref_siglip.py."""
    d = t["width"]
    specs.append(("text_model.embeddings.token_embedding.weight",
                  [vocab, d], 1.0, 0.0))
    specs.append(("text_model.embeddings.position_embedding.weight",
                  [max_positions, d], 0.5, 0.0))
    tower_specs(specs, "text_model", t)
    specs.append(("text_model.final_layer_norm.weight", [d], 0.3, 1.0))
    specs.append(("text_model.final_layer_norm.bias", [d], 0.1, 0.0))


def tensor_specs(r):
    """(name, shape, scale, offset) in file order; the C writer mirrors it."""
    t, v, e = r["text"], r["vision"], r["projection_dim"]
    specs = []
    text_specs(specs, t, VOCAB, MAXPOS)
    d, p = v["width"], v["patch_size"]
    g = v["image_size"] // p
    specs.append(("vision_model.embeddings.class_embedding", [d], 1.0, 0.0))
    specs.append(("vision_model.embeddings.patch_embedding.weight",
                  [d, 3, p, p], fscale(3 * p * p), 0.0))
    specs.append(("vision_model.embeddings.position_embedding.weight",
                  [g * g + 1, d], 0.5, 0.0))
    specs.append(("vision_model.pre_layrnorm.weight", [d], 0.3, 1.0))
    specs.append(("vision_model.pre_layrnorm.bias", [d], 0.1, 0.0))
    tower_specs(specs, "vision_model", v)
    specs.append(("vision_model.post_layernorm.weight", [d], 0.3, 1.0))
    specs.append(("vision_model.post_layernorm.bias", [d], 0.1, 0.0))
    specs.append(("visual_projection.weight", [e, v["width"]],
                  fscale(v["width"]), 0.0))
    specs.append(("text_projection.weight", [e, t["width"]],
                  fscale(t["width"]), 0.0))
    specs.append(("logit_scale", [], 0.0, 2.6592))
    return specs


def write_tensors(path, seed, dtype, specs, extras=()):
    """Writes model.safetensors: the float tensors of `specs` ((name, shape,
    scale, offset) in file order, values from gen() rounded to `dtype`),
    then `extras` ((name, int64 array) pairs, stored I64).  Shared with
    tools/ref_siglip.py.  Returns {name: float32 array as stored}."""
    entries, blobs, weights = [], [], {}
    off = 0
    for name, shape, scale, offset in specs:
        raw, vals = round_dtype(gen(seed, name, shape, scale, offset), dtype)
        weights[name] = vals.reshape(shape)
        entries.append('"%s":{"dtype":"%s","shape":[%s],"data_offsets":'
                       '[%d,%d]}' % (name, dtype,
                                     ",".join(str(s) for s in shape),
                                     off, off + len(raw)))
        blobs.append(raw)
        off += len(raw)
    for name, ints in extras:
        raw = np.ascontiguousarray(ints, dtype="<i8").tobytes()
        entries.append('"%s":{"dtype":"I64","shape":[%s],'
                       '"data_offsets":[%d,%d]}'
                       % (name, ",".join(str(s) for s in ints.shape),
                          off, off + len(raw)))
        blobs.append(raw)
        off += len(raw)
    header = ("{" + ",".join(entries) + "}").encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for b in blobs:
            f.write(b)
    return weights


def write_recipe(path, r, specs, n_text, n_vision):
    """Writes recipe r's float tensors `specs` then, when r asks for them,
    the text and vision position_ids (1 x n_text, 1 x n_vision).  Shared
    with tools/ref_siglip.py.  Returns {name: float32 array}."""
    extras = []
    if r["position_ids"]:
        for name, n in (("text_model.embeddings.position_ids", n_text),
                        ("vision_model.embeddings.position_ids", n_vision)):
            extras.append((name, np.arange(n, dtype=np.int64).reshape(1, n)))
    return write_tensors(path, r["seed"], r["dtype"], specs, extras)


def write_safetensors(path, r):
    """Writes the recipe's weights; returns {name: float32 array}."""
    g = r["vision"]["image_size"] // r["vision"]["patch_size"]
    return write_recipe(path, r, tensor_specs(r), MAXPOS, g * g + 1)


def text_config(t, act, max_positions, vocab, **extra):
    """A text_config with every field spelled out, then `extra`.  Shared
    with tools/ref_siglip.py."""
    return dict(hidden_size=t["width"], intermediate_size=t["mlp"],
                num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                max_position_embeddings=max_positions, vocab_size=vocab,
                hidden_act=act, layer_norm_eps=t["eps"], **extra)


def vision_config(v, act, **extra):
    """A vision_config with every field spelled out, as text_config."""
    return dict(hidden_size=v["width"], intermediate_size=v["mlp"],
                num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
                num_channels=3, image_size=v["image_size"],
                patch_size=v["patch_size"], hidden_act=act,
                layer_norm_eps=v["eps"], **extra)


def config_json(r):
    t, v = r["text"], r["vision"]
    if r["layout"] == "full":
        tc = text_config(t, t["act"], MAXPOS, VOCAB,
                         projection_dim=r["projection_dim"])
        vc = vision_config(v, v["act"], projection_dim=r["projection_dim"])
        return {"architectures": ["CLIPModel"], "model_type": "clip",
                "projection_dim": r["projection_dim"],
                "logit_scale_init_value": 2.6592,
                "text_config": tc, "vision_config": vc}
    if r["layout"] == "dict":
        # openai/clip-vit-base-patch32 style: *_config_dict overrides
        # *_config (here deliberately stale).
        return {"architectures": ["CLIPModel"], "model_type": "clip",
                "projection_dim": r["projection_dim"],
                "text_config": {"hidden_size": 999, "hidden_act": "relu"},
                "vision_config": {"hidden_size": 999, "patch_size": 7},
                "text_config_dict": dict(
                    hidden_size=t["width"], intermediate_size=t["mlp"],
                    num_hidden_layers=t["layers"],
                    num_attention_heads=t["heads"], hidden_act=t["act"],
                    layer_norm_eps=t["eps"]),
                "vision_config_dict": dict(
                    hidden_size=v["width"], intermediate_size=v["mlp"],
                    num_hidden_layers=v["layers"],
                    num_attention_heads=v["heads"],
                    image_size=v["image_size"],
                    patch_size=v["patch_size"], hidden_act=v["act"],
                    layer_norm_eps=v["eps"])}
    assert r["layout"] == "sparse"
    assert v["act"] == "quick_gelu" and t["eps"] == v["eps"] == 1e-5
    return {"projection_dim": r["projection_dim"],
            "text_config": dict(hidden_size=t["width"],
                                intermediate_size=t["mlp"],
                                num_hidden_layers=t["layers"],
                                num_attention_heads=t["heads"],
                                hidden_act=t["act"]),
            "vision_config": dict(hidden_size=v["width"],
                                  intermediate_size=v["mlp"],
                                  num_hidden_layers=v["layers"],
                                  num_attention_heads=v["heads"],
                                  image_size=v["image_size"],
                                  patch_size=v["patch_size"])}


# ---- the reference forward (float64, after transformers' modeling_clip) --

def act_fn(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    return lambda x: torch.nn.functional.gelu(x)  # exact (erf)


def encoder_layers(W, pfx, c, x, causal_mask):
    d, h = c["width"], c["heads"]
    hd = d // h
    act = act_fn(c["act"])
    B, S, _ = x.shape

    def lin(name, y):
        return y @ W[name + ".weight"].T + W[name + ".bias"]

    def ln(name, y):
        return torch.nn.functional.layer_norm(
            y, (d,), W[name + ".weight"], W[name + ".bias"], c["eps"])

    for i in range(c["layers"]):
        p = "%s.encoder.layers.%d." % (pfx, i)
        res = x
        y = ln(p + "layer_norm1", x)
        q = lin(p + "self_attn.q_proj", y) * hd ** -0.5
        k = lin(p + "self_attn.k_proj", y)
        v = lin(p + "self_attn.v_proj", y)
        q, k, v = (z.view(B, S, h, hd).transpose(1, 2) for z in (q, k, v))
        a = q @ k.transpose(-1, -2)
        if causal_mask is not None:
            a = a + causal_mask
        a = torch.softmax(a, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, S, d)
        x = res + lin(p + "self_attn.out_proj", o)
        res = x
        y = ln(p + "layer_norm2", x)
        y = lin(p + "mlp.fc2", act(lin(p + "mlp.fc1", y)))
        x = res + y
    return x


def text_forward(W, r, ids):
    c = r["text"]
    ids = torch.tensor(ids, dtype=torch.long)
    B, S = ids.shape
    x = W["text_model.embeddings.token_embedding.weight"][ids]
    x = x + W["text_model.embeddings.position_embedding.weight"][:S]
    mask = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    x = encoder_layers(W, "text_model", c, x, mask)
    x = torch.nn.functional.layer_norm(
        x, (c["width"],), W["text_model.final_layer_norm.weight"],
        W["text_model.final_layer_norm.bias"], c["eps"])
    eot = (ids == EOT).int().argmax(dim=-1)    # first end-of-text
    pooled = x[torch.arange(B), eot]
    e = pooled @ W["text_projection.weight"].T
    return e / e.norm(dim=-1, keepdim=True)


def vision_forward(W, r, pixels):
    c = r["vision"]
    d, p = c["width"], c["patch_size"]
    x = torch.nn.functional.conv2d(
        pixels, W["vision_model.embeddings.patch_embedding.weight"],
        stride=p)
    x = x.flatten(2).transpose(1, 2)
    B = x.shape[0]
    cls = W["vision_model.embeddings.class_embedding"].expand(B, 1, d)
    x = torch.cat([cls, x], dim=1)
    x = x + W["vision_model.embeddings.position_embedding.weight"]
    x = torch.nn.functional.layer_norm(
        x, (d,), W["vision_model.pre_layrnorm.weight"],
        W["vision_model.pre_layrnorm.bias"], c["eps"])
    x = encoder_layers(W, "vision_model", c, x, None)
    pooled = torch.nn.functional.layer_norm(
        x[:, 0], (d,), W["vision_model.post_layernorm.weight"],
        W["vision_model.post_layernorm.bias"], c["eps"])
    e = pooled @ W["visual_projection.weight"].T
    return e / e.norm(dim=-1, keepdim=True)


def token_sequences(seed):
    rng = np.random.RandomState(1000 + seed)

    def seq(body, pad):
        s = [SOT] + list(body) + [EOT]
        return s + [pad] * (77 - len(s))

    def rand(n):
        return [int(t) for t in rng.randint(1, SOT, size=n)]

    return [
        seq([], EOT),                                   # empty text
        seq([320, 1125, 539, 320, 2368], EOT),          # "a photo of a cat"
        seq([320, 1125, 539, 320, 1929], EOT),          # one token differs
        seq(rand(18), 0),                               # zero padding
        seq(rand(38), EOT),
        seq(rand(75), EOT),                             # full context
    ]


def pixels_for(seed, size):
    """Image j, CHW float32: a coarse COARSE x COARSE pattern per channel
    (uniform(seed, "coarse.j") * COARSE_SCALE, nearest-upsampled: pixel
    (y, x) takes cell (y * COARSE // size, x * COARSE // size)) plus fine
    noise uniform(seed, "pixels.j") * PIXEL_SCALE, added in float32."""
    imgs = []
    cell = (np.arange(size) * COARSE) // size
    for j in range(N_IMAGES):
        coarse = gen(seed, "coarse.%d" % j, [3, COARSE, COARSE],
                     COARSE_SCALE, 0.0)
        up = coarse[:, cell][:, :, cell]
        fine = gen(seed, "pixels.%d" % j, [3, size, size], PIXEL_SCALE, 0.0)
        imgs.append(up + fine)
    return np.stack(imgs)


def max_offdiag_cos(e, skip=()):
    cos = e @ e.T
    n = cos.shape[0]
    return max(float(cos[i, j]) for i in range(n) for j in range(n)
               if i != j and (i, j) not in skip and (j, i) not in skip)


def write_hashed(write, r):
    """Writes recipe r's model.safetensors with write(path, r) into a
    scratch folder.  Returns what write returns (the float32 weights), the
    file's sha256 and its size.  Shared with tools/ref_siglip.py."""
    with tempfile.TemporaryDirectory() as tmp:
        st = os.path.join(tmp, "model.safetensors")
        W32 = write(st, r)
        with open(st, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
            size = f.tell()
    return W32, sha, size


def weights_fields(sha, size):
    """A fixture's fields from the weights' file to n_images, in order."""
    return {
        "safetensors_sha256": sha,
        "safetensors_size": size,
        "pixel_scale": PIXEL_SCALE,
        "coarse": COARSE,
        "coarse_scale": COARSE_SCALE,
        "n_images": N_IMAGES,
    }


def embedding_fields(ids, te, ie):
    """A fixture's text ids and both embeddings, in order."""
    return {
        "text_ids": ids,
        "text_embeddings": [[float(x) for x in row] for row in te],
        "image_embeddings": [[float(x) for x in row] for row in ie],
    }


def write_fixture(outdir, name, fx):
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(fx, f, separators=(",", ":"))
        f.write("\n")


def fixture_outdir(name):
    """argv[1], else tests/fixtures/<name>: made if missing."""
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "tests", "fixtures", name)
    os.makedirs(outdir, exist_ok=True)
    return outdir


def build(r, outdir):
    W32, sha, size = write_hashed(write_safetensors, r)
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W32.items()}
    ids = token_sequences(r["seed"])
    te = text_forward(W, r, ids).numpy()
    px = pixels_for(r["seed"], r["vision"]["image_size"])
    ie = vision_forward(W, r, torch.from_numpy(px.astype(np.float64)))
    ie = ie.numpy()
    # texts 1 and 2 differ in one token on purpose
    tmax, imax = max_offdiag_cos(te, {(1, 2)}), max_offdiag_cos(ie)
    print("%s: %d bytes, max text cos %.4f, max image cos %.4f" % (
        r["name"], size, tmax, imax))
    assert tmax < 0.95, "text embeddings too similar"
    assert imax < 0.95, "image embeddings too similar"
    fx = {
        "generator": "tools/ref_clip.py",
        "recipe": r,
        "config": config_json(r),
        "preprocessor_config": r["preprocessor"],
        **weights_fields(sha, size),
        **embedding_fields(ids, te, ie),
    }
    write_fixture(outdir, r["name"], fx)


def main():
    outdir = fixture_outdir("models")
    torch.set_num_threads(1)
    for r in RECIPES:
        build(r, outdir)


if __name__ == "__main__":
    main()
