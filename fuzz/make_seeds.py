#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets that have no natural one:

  fuzz/safetensors_seeds/  safetensors_fuzz (the first byte picks the
                           parser: 0 safetensors, 1 config.json,
                           2 preprocessor_config.json)
  fuzz/tokenize_seeds/     tokenize_fuzz (CLIP BPE text)
  fuzz/query_seeds/        query_fuzz (the query syntax, docs/CLI.md)
  fuzz/request_seeds/      request_fuzz (the first byte picks the part:
                           0 a request body, 1 base64, 2 a /thumb or /image
                           URI, 3 "ADDR\nHOST\nORIGIN\nAUTH" for access.c)
  fuzz/clsset_seeds/       clsset_fuzz (a stored label set, tag set or
                           probe: cls_set_encode's bytes, classify.c);
                           tests/classify_core.c decodes them too

Each seed is small (the whole set is under 16 KB) and either valid or one
edge away from valid, so that the fuzzer starts inside each parser instead
of at its first check.  Deterministic: rerunning writes the same bytes.

    /usr/bin/python3 fuzz/make_seeds.py      (from the repository root)

image_fuzz uses tests/fixtures/images and sptok_fuzz fuzz/sptok_seeds.
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAFETENSORS = b"\x00"
CONFIG = b"\x01"
PREPROCESSOR = b"\x02"

SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4,
         "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1,
         "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def f32(values):
    return b"".join(struct.pack("<f", v) for v in values)


def f16(values):
    return b"".join(struct.pack("<e", v) for v in values)


def bf16(values):
    return b"".join(struct.pack("<f", v)[2:] for v in values)


def safetensors(tensors, metadata=None, pad=0, header=None):
    """tensors: [(name, dtype, shape, bytes)], laid out in order.  header,
    when given, replaces the JSON header text (the data is kept)."""
    hdr, data = {}, b""
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape,
                     "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header if header is not None else json.dumps(
        hdr, separators=(",", ":")).encode()
    text += b" " * pad
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    ramp = [0.5 * i - 1.0 for i in range(6)]
    s = {}
    s["f32_2x3"] = safetensors([("w", "F32", [2, 3], f32(ramp))])
    # the three dtypes the loader converts, with the metadata entry and
    # the header padding to 8 bytes that the Python writer adds
    s["mixed_dtypes"] = safetensors([
        ("a.weight", "F32", [3], f32([1.0, -2.0, 0.25])),
        ("b.weight", "F16", [2, 2], f16([0.5, -0.5, 65504.0, 6e-8])),
        ("c.bias", "BF16", [4], bf16([1.0, -1.0, 3.0e38, 1e-38])),
    ], metadata={"format": "pt"}, pad=5)
    # a scalar, an empty tensor and eight dimensions
    s["shapes"] = safetensors([
        ("scalar", "F32", [], f32([3.0])),
        ("empty", "F16", [0, 4], b""),
        ("eight", "BF16", [1, 1, 1, 1, 1, 1, 2, 1], bf16([1.0, 2.0])),
    ])
    # dtypes that open accepts and load_f32 refuses
    s["other_dtypes"] = safetensors([
        (dt, dt, [2], b"\x01" * (2 * SIZES[dt]))
        for dt in ("F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16",
                   "U8", "BOOL", "F8_E4M3", "F8_E5M2")])
    # F16 specials: infinities, NaN, subnormals
    s["f16_special"] = safetensors([
        ("x", "F16", [6], f16([float("inf"), float("-inf"), float("nan"),
                               6e-8, -0.0, 1.0]))])
    s["empty_header"] = safetensors([], header=b"{}")
    s["metadata_only"] = safetensors([], metadata={"k": "v"})
    # one edge away from valid
    s["bad_offsets"] = safetensors([], header=json.dumps(
        {"w": {"dtype": "F32", "shape": [2],
               "data_offsets": [0, 12]}}).encode()) + f32([1.0, 2.0])
    s["bad_dtype"] = safetensors([], header=json.dumps(
        {"w": {"dtype": "F12", "shape": [1],
               "data_offsets": [0, 4]}}).encode()) + f32([1.0])
    s["nine_dims"] = safetensors([], header=json.dumps(
        {"w": {"dtype": "U8", "shape": [1] * 9,
               "data_offsets": [0, 1]}}).encode()) + b"\x00"
    s["header_too_long"] = struct.pack("<Q", 64) + b"{}"
    s["not_json"] = safetensors([], header=b"{\"w\":")
    return {k: SAFETENSORS + v for k, v in s.items()}


def config_seeds():
    s = {}
    with open(os.path.join(ROOT, "models/demo/config.json"), "rb") as f:
        s["config_clip"] = CONFIG + f.read()
    # tests/testmodel.h's SigLIP layout (tm_write_siglip_config)
    siglip = {
        "architectures": ["SiglipModel"], "model_type": "siglip",
        "text_config": {
            "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 16, "vocab_size": 256,
            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
            "projection_size": 32},
        "vision_config": {
            "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_channels": 3, "image_size": 32, "patch_size": 16,
            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}}
    s["config_siglip"] = CONFIG + json.dumps(siglip).encode()
    # an image size that is no multiple of the patch (so400m-patch14-384)
    siglip["vision_config"].update(image_size=38, patch_size=14)
    s["config_siglip_remainder"] = CONFIG + json.dumps(siglip).encode()
    with open(os.path.join(ROOT, "models/demo/preprocessor_config.json"),
              "rb") as f:
        s["preprocessor_clip"] = PREPROCESSOR + f.read()
    s["preprocessor_siglip"] = PREPROCESSOR + json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 32, "width": 32}}).encode()
    return s


def tokenize_seeds():
    texts = [
        "a photo of a dog",
        "Two RED circles, and a blue star!!",
        "it's   the dog's ball -- isn't it? 10:30 meeting",
        "caf\u00e9 na\u00efve \u00fcber \u65e5\u672c\u8a9e \U0001f600",
        "spider-man c++ e-mail@example.com #tag $5.99 100%",
        "tab\tnewline\nreturn\r end",
        " ".join(["word"] * 90),
        "a\u0301 \u0130stanbul \ufb01",
    ]
    s = {"text%02d" % i: t.encode() for i, t in enumerate(texts)}
    s["bad_utf8"] = b"ok \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80"
    return s


def query_seeds():
    queries = [
        "a dog on the beach",
        "beach - people",
        "beach - 0.7:people + 0.5:@example.jpg",
        "2:id:42 - snow",
        "- sunset + img:photos/a.png",
        "path:/photos/2024/IMG_0001.JPG + .5:night",
        "1:10:30 meeting",
        "spider-man c++",
        "a - - b",
        "0:zero",
    ]
    return {"query%02d" % i: q.encode() for i, q in enumerate(queries)}


REQUEST, BASE64, URI, ACCESS = b"\x00", b"\x01", b"\x02", b"\x03"


def request_seeds():
    """Valid requests of every operation (docs/PROTOCOL.md), then the
    edges the strict parser refuses."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgAB"
    ops = [
        {"op": "status", "v": 1, "tag": 1},
        {"op": "search", "text": "a red circle", "k": 10, "offset": 0,
         "min_score": 0.1, "collapse": 0.95, "tag": "t",
         "filter": {"path_prefix": "/tmp/", "time": "exif",
                    "after": "2020-01-01", "before": "2024-12-31"}},
        {"op": "search", "terms": [{"text": "beach", "weight": 1},
                                   {"id": 42, "weight": -0.5},
                                   {"path": "/tmp/a.jpg"},
                                   {"image": png, "weight": 0.25}],
         "min_prob": 0.5},
        {"op": "search", "image": png, "k": 1},
        {"op": "similar", "id": 7, "k": 5},
        {"op": "embed", "text": "hello"},
        {"op": "embed", "image": png},
        {"op": "add", "path": "/tmp", "wait": True},
        {"op": "remove", "path": "/tmp/photos"},
        {"op": "failures", "limit": 10},
        {"op": "dupes", "threshold": 0.95, "limit": 10},
        {"op": "check", "image": png},
        {"op": "retrieve", "text": "cat", "k": 3},
        {"op": "parse", "query": "beach - 0.7:people + 2:id:18 + path:/p/a.jpg"},
        {"op": "nope", "token": "s3cret", "tag": {"a": [1, None, True]}},
    ]
    seeds = {}
    for i, r in enumerate(ops):
        seeds["op%02d" % i] = REQUEST + json.dumps(r).encode()
    edges = [
        b'{"op":"status"}xyz', b'{"op":"status"} \r\n\t',
        b'{"op":"nope","k":01}', b'{"op":"nope","k":1.}',
        b'{"op":"nope","k":-0.5e+10}', b'{"op":"nope","k":.5}',
        b'{"op":"remove","path":"/tmp\\u0000/x.jpg"}',
        b'{"op":"nope","token":"s3cret\\u0000junk"}',
        b'{"op":"nope","a":"\\\\u0000 \\ud83d\\ude00 \\u00e9"}',
        b'{"op":"status","op":"nope"}', b'{"op":"nope","a":[{"x":1,"x":2}]}',
        b'{"op":"nope","x\x00y":1}', b'\x01{"op":"nope"}', b"{",
        b'{"op":"search","image":"////","k":1}',
    ]
    for i, e in enumerate(edges):
        seeds["edge%02d" % i] = REQUEST + e
    for i, b in enumerate([b"aGVsbG8=", b"aGVsbG8", b"a G\nVs bG8=",
                           b"-_-_", b"aGVsbG8===", b"a=b", b"a"]):
        seeds["base64_%02d" % i] = BASE64 + b
    for i, u in enumerate([b"/thumb/42", b"/thumb/42?v=1700000000",
                           b"/image/18446744073709551615",
                           b"/image/18446744073709551616", b"/thumb/-1",
                           b"/image/../../etc/passwd", b"/thumb/1?v=x",
                           b"/thumb/%34%32", b"/image/"]):
        seeds["uri%02d" % i] = URI + u
    for i, a in enumerate([
            b"127.0.0.1:8080\n127.0.0.1:8080\nhttp://127.0.0.1:8080\n"
            b"Bearer s3cret",
            b"127.0.0.1:8080\nlocalhost:8080\n\nBearer x",
            b"localhost:8080\nLOCALHOST:8080\nhttp://LOCALHOST:8080",
            b"[::1]:8080\n[::1]:8080",
            b"127.0.0.1:8080\n127.0.0.1.evil.example:8080",
            b"127.0.0.1:8080\n127.0.0.1:8080, evil",
            b"127.0.0.1:8080\n127.0.0.1@evil:8080",
            b"tcp://127.0.0.1:5555",
            b"ws://[::1]:80/x\nx",
            b"0.0.0.0:8080\nphotos.example\nhttp://photos.example\n"
            b"Bearer s3cret",
            b"127.1:80", b"127.0.0.1:65536", b"ipc:///tmp/x.sock"]):
        seeds["access%02d" % i] = ACCESS + a
    return seeds


def cls_set(name, labels, dim, w, bias, kind=0, origin=0, multi=0,
            threshold=0.0, scale=1.0, templates=(), model_key="", pos=(),
            neg=(), version=1):
    """cls_set_encode's layout (classify/classify.c): "CLSS", u32 version,
    u32 kind, origin, multi, f32 threshold, scale, u32 n, dim,
    n_templates, u64 n_pos, n_neg, then u16-counted strings (name, model
    key, labels, templates), the weights, biases and example ids."""
    out = b"CLSS" + struct.pack("<IIIIffIIIQQ", version, kind, origin, multi,
                                threshold, scale, len(labels), dim,
                                len(templates), len(pos), len(neg))
    for text in [name, model_key] + list(labels) + list(templates):
        raw = text.encode()
        out += struct.pack("<H", len(raw)) + raw
    out += f32(w) + f32(bias)
    out += b"".join(struct.pack("<Q", i) for i in list(pos) + list(neg))
    return out


def clsset_seeds():
    """Valid sets (the names tests/classify_core.c expects to decode), then
    near misses ("bad_*", which it expects refused)."""
    ramp = [((i * 37) % 11 - 5) / 8.0 for i in range(64)]
    s = {}
    s["zero_shot"] = cls_set(
        "pets", ["cat", "dog", "remote control"], 8, ramp[:24], [0, 0, 0],
        scale=100.0, templates=["a photo of a {}.", "a {} in a video game."],
        model_key="clip-512-224/32-v768x12-t512x12@0123456789abcdef")
    s["siglip"] = cls_set(
        "food", ["caf\u00e9", "pizza"], 4, ramp[:8], [-12.9, -12.9], kind=1,
        multi=1, threshold=0.3, scale=117.33, templates=["{}"],
        model_key="siglip-768-224/16@fedcba9876543210")
    s["learned"] = cls_set("good-photos", ["good-photos"], 16, ramp[:16],
                           [-0.25], kind=1, origin=1, multi=1, threshold=0.5,
                           pos=[12, 40], neg=[7])
    s["minimal"] = cls_set("x", ["a"], 1, [1.0], [0.0])
    good = s["zero_shot"]
    s["bad_version"] = cls_set("x", ["a"], 1, [1.0], [0.0], version=2)
    s["bad_trailing"] = good + b"\x00"
    s["bad_truncated"] = good[:-1]
    # n = 1001 in a one-label set's header (refused before anything else)
    s["bad_labels"] = s["minimal"][:28] + struct.pack("<I", 1001) + \
        s["minimal"][32:]
    s["bad_label_long"] = cls_set("x", ["a" * 129], 1, [1.0], [0.0])
    s["bad_template"] = cls_set("x", ["a"], 1, [1.0], [0.0],
                                templates=["no hole"])
    s["bad_nan"] = cls_set("x", ["a"], 1, [float("nan")], [0.0])
    s["bad_threshold"] = cls_set("x", ["a"], 1, [1.0], [0.0], threshold=1.5)
    s["bad_name"] = cls_set("a b", ["a"], 1, [1.0], [0.0])
    return s


def write(folder, seeds):
    path = os.path.join(ROOT, "fuzz", folder)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def main():
    write("safetensors_seeds", {**safetensors_seeds(), **config_seeds()})
    write("tokenize_seeds", tokenize_seeds())
    write("query_seeds", query_seeds())
    write("request_seeds", request_seeds())
    write("clsset_seeds", clsset_seeds())


if __name__ == "__main__":
    main()
