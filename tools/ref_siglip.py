#!/usr/bin/python3
"""Reference fixtures for the SigLIP and SigLIP2 encoders
(tests/encoder_siglip.c).

An independent float64 SigLIP forward in PyTorch, written from
transformers' src/transformers/models/siglip/modeling_siglip.py at commit
1c51a62f5861390e994db1464e8a51f6d7fbacbc, with the defaults of
configuration_siglip.py at commit d5ab4d58c4e44f1a6463fd4037fcdefb355ea468
(and the text head's projection_size of the newer configuration, read in
src/transformers/models/siglip2/configuration_siglip2.py at commit
053f59efe493c4f815f39f836494a1f2f73fbe0b: None means the text hidden size).
transformers itself is not needed.  What the forward does, as there:

  vision  patch Conv2d (stride = kernel = patch, with bias), plus a learned
          position embedding per patch (no class token, no pre-layernorm);
          encoder layers; post_layernorm; then the attention-pooling head
          (SiglipMultiheadAttentionPoolingHead): a learned probe token
          attends over every token through torch.nn.MultiheadAttention
          (in_proj_weight/in_proj_bias packed q|k|v, out_proj), then
          x + mlp(layernorm(x)); the output is the probe's token.  There is
          no projection: the embedding is vision hidden_size wide.
  text    token + position embeddings; encoder layers with NON-causal
          attention and no mask (the SigLIP processor returns no
          attention_mask; the model attends to the padding too);
          final_layer_norm; pooled = the LAST position
          (last_hidden_state[:, -1, :], "sticky EOS"); head = Linear with
          bias, hidden_size -> projection_size.
  layers  x + out_proj(attn(layer_norm1(x))), then x + fc2(act(fc1(
          layer_norm2(x)))); attention softmax(q k^T * head_dim^-0.5) v;
          act = gelu_pytorch_tanh (the tanh approximation).
  scores  both embeddings L2-normalised; the match probability of a pair is
          sigmoid(exp(logit_scale) * cos + logit_bias), logit_scale and
          logit_bias being model tensors of shape [1].

For each recipe (a small random model in Hugging Face layout) this script
  1. generates every weight with tools/ref_clip.py's generator (splitmix64
     over the tensor name's FNV-1a hash; tests/testmodel.h writes the same
     bytes) and writes model.safetensors with tensor names as
     SiglipModel.state_dict() names them (the position_ids buffers are not
     persistent; one recipe carries them anyway, as some conversions do);
  2. runs the forward on token id sequences (the tokenizer's shape: ids,
     </s>, then padding to max_position_embeddings) and on ref_clip's
     deterministic pixel tensors;
  3. writes tests/fixtures/siglip/<recipe>.json: the recipe, config.json,
     preprocessor_config.json, the sha256 of model.safetensors, the ids,
     the expected embeddings and the expected match probability of every
     text-image pair.

Run with Debian's python3-torch:  tools/ref_siglip.py [outdir]
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_clip import (embedding_fields, fixture_outdir,  # noqa: E402
                      fscale, max_offdiag_cos, pixels_for, text_config,
                      text_specs, tower_specs, vision_config,
                      weights_fields, write_fixture, write_hashed,
                      write_recipe)

VOCAB = 2048          # token table rows (the tokenizers have <= 1200 pieces)
LOG10 = math.log(10.0)

# The special ids of the tokenizers in tests/fixtures/spm/ (as in the hub's
# google/siglip-* spiece.model: <pad> 0, </s> 1, <unk> 2, and SigLIP pads
# with </s>; in the Gemma vocabulary of SigLIP2: <pad> 0, <eos> 1).
TOKENIZERS = {
    "siglip": dict(dir="tests/fixtures/spm/siglip", eos_id=1, pad_id=1),
    "siglip2": dict(dir="tests/fixtures/spm/siglip2", eos_id=1, pad_id=0),
}

# Text-image cosines of random towers sit near 0, so a bias near -1 (with a
# scale of 10) spreads the probabilities over (0, 1); one recipe carries
# google/siglip-base-patch16-224's own values (scale 117, bias -12.9).
RECIPES = [
    dict(name="siglip_b16_224_f32", family="siglip", seed=11, dtype="F32",
         layout="full", position_ids=False, max_positions=64,
         projection_size=None, logit_scale=LOG10, logit_bias=-1.0,
         text=dict(width=64, layers=2, heads=4, mlp=128, eps=1e-6),
         vision=dict(width=64, layers=2, heads=4, mlp=128, eps=1e-6,
                     image_size=224, patch_size=16),
         resample=3),
    # 384 px; text positions 16 (the context follows the config); the text
    # tower narrower than the vision one, its head widening to 48
    # (projection_size, as google/siglip2-giant-opt-patch16-256 does).
    dict(name="siglip_b16_384_f16_ctx16", family="siglip", seed=12,
         dtype="F16", layout="full", position_ids=True, max_positions=16,
         projection_size=48, logit_scale=LOG10, logit_bias=-0.5,
         text=dict(width=32, layers=2, heads=2, mlp=96, eps=1e-6),
         vision=dict(width=48, layers=2, heads=3, mlp=96, eps=1e-6,
                     image_size=384, patch_size=16),
         resample=3),
    # The hub's sparse layout: absent fields take SiglipConfig's defaults
    # (64 positions, eps 1e-6, gelu_pytorch_tanh, image 224, patch 16);
    # no preprocessor_config.json (SigLIP's defaults: bicubic squash to
    # image_size, mean and std 0.5).
    dict(name="siglip_sparse_bf16_224", family="siglip", seed=13,
         dtype="BF16", layout="sparse", position_ids=False,
         max_positions=64, projection_size=None, logit_scale=4.7659,
         logit_bias=-12.9, text=dict(width=48, layers=2, heads=4, mlp=96,
                                     eps=1e-6),
         vision=dict(width=48, layers=2, heads=4, mlp=96, eps=1e-6,
                     image_size=224, patch_size=16),
         resample=None),
    # SigLIP2 FixRes: the same graph (model_type "siglip"); the folder holds
    # the Gemma-like tokenizer.model; bilinear resampling.
    dict(name="siglip2_b16_256_f32", family="siglip2", seed=14,
         dtype="F32", layout="full", position_ids=False, max_positions=64,
         projection_size=None, logit_scale=LOG10, logit_bias=-1.0,
         text=dict(width=48, layers=2, heads=3, mlp=128, eps=1e-6),
         vision=dict(width=48, layers=2, heads=3, mlp=128, eps=1e-6,
                     image_size=256, patch_size=16),
         resample=2),
]


def head_out(r):
    return r["projection_size"] or r["text"]["width"]


def tensor_specs(r):
    """(name, shape, scale, offset) in file order; tests/testmodel.h
    mirrors it."""
    t, v = r["text"], r["vision"]
    specs = []
    text_specs(specs, t, VOCAB, r["max_positions"])
    d = t["width"]
    specs.append(("text_model.head.weight", [head_out(r), d], fscale(d),
                  0.0))
    specs.append(("text_model.head.bias", [head_out(r)], 0.1, 0.0))
    d, m, p = v["width"], v["mlp"], v["patch_size"]
    g = v["image_size"] // p
    specs.append(("vision_model.embeddings.patch_embedding.weight",
                  [d, 3, p, p], fscale(3 * p * p), 0.0))
    specs.append(("vision_model.embeddings.patch_embedding.bias", [d], 0.1,
                  0.0))
    specs.append(("vision_model.embeddings.position_embedding.weight",
                  [g * g, d], 0.5, 0.0))
    tower_specs(specs, "vision_model", v)
    specs.append(("vision_model.post_layernorm.weight", [d], 0.3, 1.0))
    specs.append(("vision_model.post_layernorm.bias", [d], 0.1, 0.0))
    h = "vision_model.head."
    specs.append((h + "probe", [1, 1, d], 1.0, 0.0))
    # one tensor for q|k|v: one scale, between the layers' q/k and v gains
    specs.append((h + "attention.in_proj_weight", [3 * d, d],
                  fscale(d, 3.0), 0.0))
    specs.append((h + "attention.in_proj_bias", [3 * d], 0.1, 0.0))
    specs.append((h + "attention.out_proj.weight", [d, d], fscale(d), 0.0))
    specs.append((h + "attention.out_proj.bias", [d], 0.1, 0.0))
    specs.append((h + "layernorm.weight", [d], 0.3, 1.0))
    specs.append((h + "layernorm.bias", [d], 0.1, 0.0))
    specs.append((h + "mlp.fc1.weight", [m, d], fscale(d), 0.0))
    specs.append((h + "mlp.fc1.bias", [m], 0.1, 0.0))
    specs.append((h + "mlp.fc2.weight", [d, m], fscale(m), 0.0))
    specs.append((h + "mlp.fc2.bias", [d], 0.1, 0.0))
    specs.append(("logit_scale", [1], 0.0, r["logit_scale"]))
    specs.append(("logit_bias", [1], 0.0, r["logit_bias"]))
    return specs


def write_safetensors(path, r):
    g = r["vision"]["image_size"] // r["vision"]["patch_size"]
    return write_recipe(path, r, tensor_specs(r), r["max_positions"], g * g)


TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def config_json(r):
    t, v = r["text"], r["vision"]
    if r["layout"] == "full":
        tc = text_config(t, "gelu_pytorch_tanh", r["max_positions"], VOCAB,
                         model_type="siglip_text_model")
        if r["projection_size"] is not None:
            tc["projection_size"] = r["projection_size"]
        vc = vision_config(v, "gelu_pytorch_tanh",
                           model_type="siglip_vision_model")
    else:
        # google/siglip-base-patch16-224's config.json: only what differs
        # from the defaults
        assert r["layout"] == "sparse"
        assert r["max_positions"] == 64 and r["projection_size"] is None
        assert t["eps"] == v["eps"] == 1e-6
        assert (v["image_size"], v["patch_size"]) == (224, 16)
        tc = dict(hidden_size=t["width"], intermediate_size=t["mlp"],
                  model_type="siglip_text_model",
                  num_attention_heads=t["heads"],
                  num_hidden_layers=t["layers"], vocab_size=VOCAB)
        vc = dict(hidden_size=v["width"], intermediate_size=v["mlp"],
                  model_type="siglip_vision_model",
                  num_attention_heads=v["heads"],
                  num_hidden_layers=v["layers"])
    return {"architectures": ["SiglipModel"], "initializer_factor": 1.0,
            "model_type": "siglip", "text_config": tc,
            "torch_dtype": TORCH_DTYPE[r["dtype"]],
            "transformers_version": "4.47.0", "vision_config": vc}


def preprocessor_json(r):
    """The hub's SiglipImageProcessor file (None: no file)."""
    if r["resample"] is None:
        return None
    s = r["vision"]["image_size"]
    return {"do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
            "resample": r["resample"],
            "rescale_factor": 0.00392156862745098,
            "size": {"height": s, "width": s}}


# ---- the reference forward (float64, after modeling_siglip.py) -----------

def gelu_tanh(x):
    # ACT2FN["gelu_pytorch_tanh"]: nn.functional.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                       (x + 0.044715 * x ** 3)))


def linear(W, name, x):
    return x @ W[name + ".weight"].T + W[name + ".bias"]


def layer_norm(W, name, x, eps):
    return torch.nn.functional.layer_norm(
        x, (x.shape[-1],), W[name + ".weight"], W[name + ".bias"], eps)


def encoder(W, pfx, c, x):
    """SiglipEncoder: no attention mask in either tower."""
    d, h = c["width"], c["heads"]
    hd = d // h
    B, S, _ = x.shape
    for i in range(c["layers"]):
        p = "%s.encoder.layers.%d." % (pfx, i)
        res = x
        y = layer_norm(W, p + "layer_norm1", x, c["eps"])
        q = linear(W, p + "self_attn.q_proj", y)
        k = linear(W, p + "self_attn.k_proj", y)
        v = linear(W, p + "self_attn.v_proj", y)
        q, k, v = (z.view(B, S, h, hd).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax((q @ k.transpose(2, 3)) * hd ** -0.5, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, S, d)
        x = res + linear(W, p + "self_attn.out_proj", o)
        res = x
        y = layer_norm(W, p + "layer_norm2", x, c["eps"])
        y = linear(W, p + "mlp.fc2", gelu_tanh(linear(W, p + "mlp.fc1", y)))
        x = res + y
    return x


def normalize(e):
    return e / e.norm(p=2, dim=-1, keepdim=True)


def text_forward(W, r, ids):
    c = r["text"]
    ids = torch.tensor(ids, dtype=torch.long)
    S = ids.shape[1]
    x = W["text_model.embeddings.token_embedding.weight"][ids]
    x = x + W["text_model.embeddings.position_embedding.weight"][:S]
    x = encoder(W, "text_model", c, x)
    x = layer_norm(W, "text_model.final_layer_norm", x, c["eps"])
    pooled = x[:, -1, :]
    return normalize(linear(W, "text_model.head", pooled))


def map_head(W, c, x):
    """SiglipMultiheadAttentionPoolingHead, written out."""
    pfx = "vision_model.head."
    d, h = c["width"], c["heads"]
    hd = d // h
    B, S, _ = x.shape
    probe = W[pfx + "probe"].expand(B, 1, d)
    wq, wk, wv = W[pfx + "attention.in_proj_weight"].chunk(3)
    bq, bk, bv = W[pfx + "attention.in_proj_bias"].chunk(3)
    q = (probe @ wq.T + bq).view(B, 1, h, hd).transpose(1, 2)
    k = (x @ wk.T + bk).view(B, S, h, hd).transpose(1, 2)
    v = (x @ wv.T + bv).view(B, S, h, hd).transpose(1, 2)
    a = torch.softmax((q @ k.transpose(2, 3)) * hd ** -0.5, dim=-1)
    o = (a @ v).transpose(1, 2).reshape(B, 1, d)
    o = linear(W, pfx + "attention.out_proj", o)
    # the same through torch's own MultiheadAttention, to hold the q|k|v
    # packing and the scaling to what nn.MultiheadAttention does
    mha, _ = torch.nn.functional.multi_head_attention_forward(
        probe.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), d, h,
        W[pfx + "attention.in_proj_weight"],
        W[pfx + "attention.in_proj_bias"], None, None, False, 0.0,
        W[pfx + "attention.out_proj.weight"],
        W[pfx + "attention.out_proj.bias"], training=False,
        need_weights=False)
    assert float((mha.transpose(0, 1) - o).abs().max()) < 1e-10
    y = layer_norm(W, pfx + "layernorm", o, c["eps"])
    y = linear(W, pfx + "mlp.fc2", gelu_tanh(linear(W, pfx + "mlp.fc1", y)))
    return (o + y)[:, 0]


def vision_forward(W, r, pixels):
    c = r["vision"]
    x = torch.nn.functional.conv2d(
        pixels, W["vision_model.embeddings.patch_embedding.weight"],
        W["vision_model.embeddings.patch_embedding.bias"],
        stride=c["patch_size"])
    x = x.flatten(2).transpose(1, 2)
    x = x + W["vision_model.embeddings.position_embedding.weight"]
    x = encoder(W, "vision_model", c, x)
    x = layer_norm(W, "vision_model.post_layernorm", x, c["eps"])
    return normalize(map_head(W, c, x))


def token_sequences(r):
    """Padded sequences as the tokenizer makes them: ids, </s>, then pad
    ids to max_position_embeddings; the last one fills the context."""
    n = r["max_positions"]
    tok = TOKENIZERS[r["family"]]
    rng = np.random.RandomState(2000 + r["seed"])

    def seq(body):
        s = list(body)[:n - 1] + [tok["eos_id"]]
        return s + [tok["pad_id"]] * (n - len(s))

    def rand(k):
        return [int(t) for t in rng.randint(3, 1000, size=k)]

    return [
        seq([]),                                    # empty text
        seq([20, 31, 9, 20, 77]),
        seq([20, 31, 9, 20, 78]),                   # one token differs
        seq(rand(8) + [VOCAB - 1]),                 # the table's last row
        seq(rand(min(30, n - 2))),
        seq(rand(n - 1)),                           # no padding at all
    ]


def build(r, outdir):
    W32, sha, size = write_hashed(write_safetensors, r)
    W = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W32.items()}
    ids = token_sequences(r)
    te = text_forward(W, r, ids)
    px = pixels_for(r["seed"], r["vision"]["image_size"])
    ie = vision_forward(W, r, torch.from_numpy(px.astype(np.float64)))
    assert te.shape[1] == ie.shape[1] == r["vision"]["width"]
    # the values as stored (rounded to the dtype)
    ls = float(W["logit_scale"][0])
    lb = float(W["logit_bias"][0])
    cos = te @ ie.T
    prob = torch.sigmoid(cos * math.exp(ls) + lb)
    te, ie, prob = te.numpy(), ie.numpy(), prob.numpy()
    # texts 1 and 2 differ in one token on purpose
    tmax, imax = max_offdiag_cos(te, {(1, 2)}), max_offdiag_cos(ie)
    c12 = float(te[1] @ te[2])
    print("%s: %d bytes, max text cos %.4f (one token apart %.4f), max "
          "image cos %.4f, prob %.3g..%.3g" % (
              r["name"], size, tmax, c12, imax, prob.min(), prob.max()))
    assert tmax < 0.95, "text embeddings too similar"
    assert c12 < 0.9999, "the pooled text ignores a content token"
    assert imax < 0.95, "image embeddings too similar"
    fx = {
        "generator": "tools/ref_siglip.py",
        "recipe": r,
        "vocab_size": VOCAB,
        "config": config_json(r),
        "preprocessor_config": preprocessor_json(r),
        "tokenizer": TOKENIZERS[r["family"]],
        **weights_fields(sha, size),
        "logit_scale": ls,
        "logit_bias": lb,
        **embedding_fields(ids, te, ie),
        "prob": [[float(x) for x in row] for row in prob],
    }
    write_fixture(outdir, r["name"], fx)


def check_tokenizers(repo):
    """The special ids above are those of the test tokenizers' files (with
    python3-sentencepiece, when installed), and the vocabularies fit the
    token table."""
    try:
        import sentencepiece
    except ImportError:
        print("note: no python3-sentencepiece; tokenizer ids not checked")
        return
    for fam, tok in sorted(TOKENIZERS.items()):
        d = os.path.join(repo, tok["dir"])
        model = os.path.join(d, "tokenizer.model" if fam == "siglip2" else
                             "spiece.model")
        if not os.path.exists(model):
            print("note: %s is missing; tokenizer ids not checked" % model)
            continue
        sp = sentencepiece.SentencePieceProcessor(model_file=model)
        with open(os.path.join(d, "special_tokens_map.json")) as f:
            special = json.load(f)

        def piece_id(key):
            t = special[key]
            return sp.piece_to_id(t if isinstance(t, str) else t["content"])

        assert piece_id("eos_token") == tok["eos_id"], model
        assert piece_id("pad_token") == tok["pad_id"], model
        assert sp.get_piece_size() <= VOCAB, model


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    check_tokenizers(os.path.join(here, ".."))
    outdir = fixture_outdir("siglip")
    torch.set_num_threads(1)
    # the tanh GELU written out above is torch's
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    assert float((gelu_tanh(x) - torch.nn.functional.gelu(
        x, approximate="tanh")).abs().max()) < 1e-14
    for r in RECIPES:
        build(r, outdir)


if __name__ == "__main__":
    main()
