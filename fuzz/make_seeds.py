#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets that have no natural one:

  fuzz/safetensors_seeds/  safetensors_fuzz (the first byte picks the
                           parser: 0 safetensors, 1 config.json,
                           2 preprocessor_config.json)
  fuzz/tokenize_seeds/     tokenize_fuzz (CLIP BPE text)
  fuzz/query_seeds/        query_fuzz (the query syntax, docs/CLI.md)

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


if __name__ == "__main__":
    main()
