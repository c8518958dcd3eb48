#!/usr/bin/python3
"""PyTorch baseline for bench/encoder_bench.c: a CLIP or SigLIP forward
written as transformers' modeling_clip / modeling_siglip do it (nn.Linear
q/k/v/out projections, per-layer modules, float32), on a randomly
initialised model of the shapes given, timed on the same machine with the
same thread count.

    tools/torch_bench.py --threads N [--shape b32|b16|siglip-b16] [--quick]

Shapes:
  b32         CLIP ViT-B/32 (class token, pre-LN, quick_gelu, causal text
              cut at the end token, projections).
  b16         CLIP ViT-B/16: b32 with 16-pixel patches (197 tokens); the
              same text tower.
  siglip-b16  SigLIP-B/16 at 224 px (google/siglip-base-patch16-224): patch
              conv with bias, position embeddings, no class token, no
              pre-LN, gelu tanh approximation, post-LN, attention-pooling
              head (torch.nn.MultiheadAttention over a probe); text tower
              non-causal over all 64 positions, final LN, last position,
              Linear head.  Text keys are the real tokens before padding:
              every text runs at 64 positions.

Prints one JSON object on the last line of stdout:
    {"torch": "1.13...", "threads": N, "shape": "b32", "rss_mb": r,
     "images_per_s": {"1": x, "8": y, "32": z},
     "text_ms": {"8": a, "77": b}}           (siglip-b16: "8", "64")
rss_mb is the process's VmRSS (MB of 10^6 bytes) after building the model,
before running it.
Exits 3 with a message on stderr when torch is missing.
"""
import argparse
import json
import sys
import time

try:
    import torch
    from torch import nn
except ImportError:
    print("torch_bench: PyTorch is not installed (python3-torch)",
          file=sys.stderr)
    sys.exit(3)

SHAPES = {
    # ViT-B/32: vision 768 wide, 12 layers, 12 heads, MLP 3072; text 512,
    # 12 layers, 8 heads, MLP 2048; projection 512.
    "b32": dict(vw=768, vl=12, vh=12, vm=3072, tw=512, tl=12, th=8, tm=2048,
                proj=512, image=224, patch=32, vocab=49408, pos=77),
    # ViT-B/16: the same with 16-pixel patches (14 x 14 + 1 tokens).
    "b16": dict(vw=768, vl=12, vh=12, vm=3072, tw=512, tl=12, th=8, tm=2048,
                proj=512, image=224, patch=16, vocab=49408, pos=77),
    # SigLIP-B/16 at 224 px: both towers 768 wide, 12 layers, 12 heads,
    # MLP 3072; vocabulary 32000, 64 text positions, head 768 -> 768.
    "siglip-b16": dict(vw=768, vl=12, vh=12, vm=3072, tw=768, tl=12, th=12,
                       tm=3072, proj=768, image=224, patch=16,
                       vocab=32000, pos=64, siglip=True),
}


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.hd = h, d // h
        self.scale = self.hd ** -0.5
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        B, S, D = x.shape
        q = self.q_proj(x) * self.scale
        k, v = self.k_proj(x), self.v_proj(x)
        q, k, v = (t.view(B, S, self.h, self.hd).transpose(1, 2)
                   for t in (q, k, v))
        a = q @ k.transpose(-1, -2)
        if mask is not None:
            a = a + mask
        a = a.softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, S, D)
        return self.out_proj(o)


def quick_gelu(y):
    return y * torch.sigmoid(1.702 * y)


def gelu_tanh(y):                                   # gelu_pytorch_tanh
    return nn.functional.gelu(y, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, d, m, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, m), nn.Linear(m, d)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Layer(nn.Module):
    def __init__(self, d, h, m, act=quick_gelu, eps=1e-5):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.self_attn = Attention(d, h)
        self.mlp = MLP(d, m, act)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Text(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.tok = nn.Embedding(s["vocab"], s["tw"])
        self.pos = nn.Embedding(s["pos"], s["tw"])
        self.layers = nn.ModuleList(Layer(s["tw"], s["th"], s["tm"])
                                    for _ in range(s["tl"]))
        self.final = nn.LayerNorm(s["tw"])
        self.proj = nn.Linear(s["tw"], s["proj"], bias=False)

    def forward(self, ids):
        S = ids.shape[1]
        x = self.tok(ids) + self.pos.weight[:S]
        mask = torch.full((S, S), float("-inf")).triu(1)
        for layer in self.layers:
            x = layer(x, mask)
        x = self.final(x)
        eot = (ids == 49407).int().argmax(dim=-1)
        e = self.proj(x[torch.arange(ids.shape[0]), eot])
        return e / e.norm(dim=-1, keepdim=True)


class Vision(nn.Module):
    def __init__(self, s):
        super().__init__()
        d, p = s["vw"], s["patch"]
        g = s["image"] // p
        self.patch = nn.Conv2d(3, d, p, stride=p, bias=False)
        self.cls = nn.Parameter(torch.randn(d))
        self.pos = nn.Parameter(torch.randn(g * g + 1, d) * 0.02)
        self.pre = nn.LayerNorm(d)
        self.layers = nn.ModuleList(Layer(d, s["vh"], s["vm"])
                                    for _ in range(s["vl"]))
        self.post = nn.LayerNorm(d)
        self.proj = nn.Linear(d, s["proj"], bias=False)

    def forward(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        B = x.shape[0]
        x = torch.cat([self.cls.expand(B, 1, -1), x], dim=1) + self.pos
        x = self.pre(x)
        for layer in self.layers:
            x = layer(x, None)
        e = self.proj(self.post(x[:, 0]))
        return e / e.norm(dim=-1, keepdim=True)


class SiglipText(nn.Module):
    """SiglipTextTransformer + head: no mask (not causal), every position,
    final LN, the last position, Linear head with bias."""

    def __init__(self, s):
        super().__init__()
        d = s["tw"]
        self.tok = nn.Embedding(s["vocab"], d)
        self.pos = nn.Embedding(s["pos"], d)
        self.layers = nn.ModuleList(
            Layer(d, s["th"], s["tm"], gelu_tanh, 1e-6)
            for _ in range(s["tl"]))
        self.final = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, s["proj"])

    def forward(self, ids):
        S = ids.shape[1]
        x = self.tok(ids) + self.pos.weight[:S]
        for layer in self.layers:
            x = layer(x, None)
        e = self.head(self.final(x)[:, -1, :])
        return e / e.norm(dim=-1, keepdim=True)


class MAPHead(nn.Module):
    """SiglipMultiheadAttentionPoolingHead."""

    def __init__(self, d, h, m):
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, d))
        self.attention = nn.MultiheadAttention(d, h, batch_first=True)
        self.layernorm = nn.LayerNorm(d, eps=1e-6)
        self.mlp = MLP(d, m, gelu_tanh)

    def forward(self, x):
        probe = self.probe.repeat(x.shape[0], 1, 1)
        x = self.attention(probe, x, x)[0]
        x = x + self.mlp(self.layernorm(x))
        return x[:, 0]


class SiglipVision(nn.Module):
    """SiglipVisionTransformer: patch conv with bias + positions (no class
    token, no pre-LN), encoder, post-LN, attention-pooling head."""

    def __init__(self, s):
        super().__init__()
        d, p = s["vw"], s["patch"]
        g = s["image"] // p
        self.patch = nn.Conv2d(3, d, p, stride=p)
        self.pos = nn.Embedding(g * g, d)
        self.layers = nn.ModuleList(
            Layer(d, s["vh"], s["vm"], gelu_tanh, 1e-6)
            for _ in range(s["vl"]))
        self.post = nn.LayerNorm(d, eps=1e-6)
        self.head = MAPHead(d, s["vh"], s["vm"])

    def forward(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2) + self.pos.weight
        for layer in self.layers:
            x = layer(x, None)
        e = self.head(self.post(x))
        return e / e.norm(dim=-1, keepdim=True)


def rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def timeit(fn, min_runs, min_s):
    fn()                                             # warm up
    times = []
    t_end = time.perf_counter() + min_s
    while len(times) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)             # least disturbed, as encoder_bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--shape", default="b32", choices=sorted(SHAPES))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = SHAPES[a.shape]
    siglip = s.get("siglip", False)
    if siglip:
        text, vision = SiglipText(s).eval(), SiglipVision(s).eval()
    else:
        text, vision = Text(s).eval(), Vision(s).eval()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "shape": a.shape, "rss_mb": rss_mb(), "images_per_s": {},
           "text_ms": {}}
    with torch.inference_mode():
        for b in (1, 8, 32):
            px = torch.randn(b, 3, s["image"], s["image"])
            runs = 1 if (a.quick or b == 32) else 3
            t = timeit(lambda: vision(px), runs, 0 if a.quick else 1.0)
            out["images_per_s"][str(b)] = b / t
        for n in ((8, 64) if siglip else (8, 77)):
            if siglip:
                # n - 1 pieces and </s> (id 1), padded with </s> to all 64
                # positions, as SiglipTokenizer pads.
                ids = torch.ones(1, s["pos"], dtype=torch.long)
                ids[0, :n - 1] = torch.randint(3, s["vocab"], (n - 1,))
            else:
                ids = torch.randint(1, 49406, (1, n))
                ids[0, 0], ids[0, -1] = 49406, 49407
            t = timeit(lambda: text(ids), 5, 0.5 if a.quick else 2.0)
            out["text_ms"][str(n)] = t * 1e3
    print(json.dumps(out))


if __name__ == "__main__":
    main()
