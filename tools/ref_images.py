#!/usr/bin/python3
"""Generates the image fixtures and their Pillow reference for tests/encoder_image.c.

Run once with Debian's python3 (PIL 9.4, numpy) from the repository root:

    /usr/bin/python3 tools/ref_images.py

Writes tests/fixtures/images/: the images themselves (JPEG and PNG of every
kind the decoder supports, all eight EXIF orientations, bad files), and the
reference computed with Pillow, the independent implementation:

  *.rgb   full-size decode: ImageOps.exif_transpose + convert("RGB"), raw
          interleaved bytes, rows top to bottom
  *.u8    exact-mode crop: the Hugging Face CLIPImageProcessor steps done here
          with Pillow and numpy (transformers itself is not installed):
          get_resize_output_image_size(default_to_square=False), PIL
          Image.resize(BICUBIC, reducing_gap=None), image_transforms.center_crop
          (zero padding when the crop is larger), raw HWC bytes
  *.png   the same for the large (224 / 336) crops, stored as RGB PNG to stay small
  *.f32   normalised CHW float32 (little-endian) for one image: rescale by
          1/255 in float64, cast to float32, (x - mean) / std in float32, as HF
  pp / ppnorm / ppval lines: the resize of both modes with both filters
          (bilinear 2, bicubic 3; see below): the uint8 result as a .u8 or
          .png file or as crc32:XXXXXXXX of its HWC bytes (zlib's CRC-32),
          normalised CHW float32 files, and single float values
  manifest.txt  one line per check, parsed by the test

SigLIP: hf_siglip() is transformers' SiglipImageProcessor.preprocess
(src/transformers/models/siglip/image_processing_siglip.py, commit 15ea02a2;
image_transforms.py resize/rescale/normalize, commit 000593ad) written out
with Pillow and numpy: image_transforms.resize(image, size=(height, width),
resample) turns the uint8 HWC array into a PIL image (Image.fromarray) and
calls Image.resize((width, height), resample, reducing_gap=None): a squash,
no aspect kept, no crop; rescale multiplies by rescale_factor in float64 and
casts to float32; normalize does (x - mean) / std with float32 mean and std,
channels last; the result is transposed to CHW.  do_convert_rgb is null in
SigLIP's preprocessor_config.json, so HF expects RGB input: it is given
what the decoder produces, Pillow's exif_transpose + convert("RGB").

Documented divergence from Pillow: 16-bit grayscale PNGs open in Pillow as
mode "I" whose convert("RGB") clips to 255; clipdex takes the high byte of
each sample instead (as Pillow itself does for 16-bit RGB, RGBA and gray+alpha),
and so does this reference.

YCCK JPEGs cannot be written with Pillow: the YCCK fixture is compressed by
libturbojpeg through ctypes (TJPF_CMYK input), then decoded by Pillow for the
reference.

Everything is deterministic (fixed seeds; Pillow's encoders are deterministic).
"""
import calendar
import ctypes
import ctypes.util
import io
import math
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

OUT = "tests/fixtures/images"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
manifest = []


def photo(w, h, seed, noise=10.0):
    """A smooth, asymmetric, photo-like RGB picture plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 90 * np.sin(x / (w / 5.3) + seed) * np.cos(y / (h / 3.1))
    g = 40 + 180 * (x / max(w - 1, 1)) * (0.3 + 0.7 * y / max(h - 1, 1))
    b = 128 + 100 * np.cos((x + 2 * y) / (w / 4.7) + 0.5 * seed)
    # an off-centre bright disc makes flips and rotations distinguishable
    d = (x - 0.3 * w) ** 2 + (y - 0.25 * h) ** 2 < (0.15 * min(w, h)) ** 2
    img = np.stack([r, g, b], axis=-1)
    img[d] = (250, 240, 20)
    img += rng.normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def path(name):
    return os.path.join(OUT, name)


def tiff_exif(orientation=None, dto=None, big_endian=False):
    """A TIFF/EXIF blob: IFD0 with Orientation and the Exif IFD pointer, an
    Exif IFD with DateTimeOriginal."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8)
    ifd0 = []
    if orientation is not None:
        ifd0.append((0x0112, 3, 1, struct.pack(e + "HH", orientation, 0)))
    n0 = len(ifd0) + (1 if dto is not None else 0)
    ifd0_size = 2 + 12 * n0 + 4
    exif_off = 8 + ifd0_size
    if dto is not None:
        ifd0.append((0x8769, 4, 1, struct.pack(e + "I", exif_off)))
    out = head + struct.pack(e + "H", len(ifd0))
    for tag, typ, cnt, val in ifd0:
        out += struct.pack(e + "HHI", tag, typ, cnt) + val
    out += struct.pack(e + "I", 0)
    if dto is not None:
        s = dto.encode() + b"\x00"
        data_off = exif_off + 2 + 12 + 4
        out += struct.pack(e + "H", 1)
        out += struct.pack(e + "HHII", 0x9003, 2, len(s), data_off)
        out += struct.pack(e + "I", 0) + s
    return out


def png_chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data))


def png_write(name, samples, bit_depth, color_type, palette=None, trns=None,
              interlace=False, exif=None):
    """A minimal PNG writer for what Pillow cannot save (16-bit RGB(A), 1/2/4
    bit, Adam7).  samples: (h, w, channels) unsigned ints."""
    h, w, c = samples.shape

    def rows(a):
        raw = b""
        for row in a:
            if bit_depth == 16:
                line = row.astype(">u2").tobytes()
            elif bit_depth == 8:
                line = row.astype(np.uint8).tobytes()
            else:
                vals = row.reshape(-1)
                per = 8 // bit_depth
                line = bytearray((len(vals) + per - 1) // per)
                for i, v in enumerate(vals):
                    line[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
                line = bytes(line)
            raw += b"\x00" + line
        return raw

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                  (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    else:
        raw = rows(samples)
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                           1 if interlace else 0))
    if palette is not None:
        data += png_chunk(b"PLTE", bytes(palette))
    if trns is not None:
        data += png_chunk(b"tRNS", bytes(trns))
    if exif is not None:
        data += png_chunk(b"eXIf", exif)
    data += png_chunk(b"IDAT", zlib.compress(raw, 9))
    data += png_chunk(b"IEND", b"")
    with open(path(name), "wb") as f:
        f.write(data)


def pil_rgb(name):
    """Pillow's reading of a file: exif_transpose, then RGB (high byte for
    16-bit grayscale, see the module comment)."""
    im = Image.open(path(name))
    im.load()
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF: clipdex ignores it, so does the reference
        pass
    if im.mode == "I":
        a = (np.array(im).astype(np.int64) >> 8).astype(np.uint8)
        return np.stack([a, a, a], axis=-1)
    return np.array(im.convert("RGB"))


def hf_resize_crop(rgb, shortest_edge, crop_w, crop_h, resample=Image.BICUBIC):
    h, w = rgb.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = shortest_edge, int(shortest_edge * long / short)
    nh, nw = (new_long, new_short) if w <= h else (new_short, new_long)
    im = Image.fromarray(rgb)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample, reducing_gap=None)
    a = np.array(im)
    top = (nh - crop_h) // 2
    left = (nw - crop_w) // 2
    bottom, right = top + crop_h, left + crop_w
    if top >= 0 and bottom <= nh and left >= 0 and right <= nw:
        return a[top:bottom, left:right].copy()
    new_h, new_w = max(crop_h, nh), max(crop_w, nw)
    pad = np.zeros((new_h, new_w, 3), np.uint8)
    tp, lp = math.ceil((new_h - nh) / 2), math.ceil((new_w - nw) / 2)
    pad[tp:tp + nh, lp:lp + nw] = a
    top, bottom, left, right = top + tp, bottom + tp, left + lp, right + lp
    return pad[max(0, top):min(new_h, bottom), max(0, left):min(new_w, right)].copy()


def hf_siglip(rgb, height, width, resample, mean=SIGLIP_MEAN, std=SIGLIP_STD,
              rescale_factor=1 / 255):
    """SiglipImageProcessor.preprocess on one RGB uint8 HWC image (see the
    module comment): returns the resized uint8 HWC array (the value HF holds
    between resize and rescale) and the float32 CHW pixel values."""
    # image_transforms.resize: to_pil_image(uint8) is Image.fromarray; PIL
    # sizes are (width, height)
    im = Image.fromarray(rgb).resize((width, height), resample=resample,
                                     reducing_gap=None)
    a = np.array(im)
    assert a.shape == (height, width, 3), a.shape
    # image_transforms.rescale(dtype=np.float32)
    x = (a.astype(np.float64) * rescale_factor).astype(np.float32)
    # image_transforms.normalize, channels last
    x = (x - np.array(mean, dtype=x.dtype)) / np.array(std, dtype=x.dtype)
    return a, x.transpose(2, 0, 1)


def pp_ref(mode, resample, name, se, w, h):
    """The uint8 HWC result of one mode ("crop": CLIP, "squash": SigLIP)."""
    rgb = pil_rgb(name)
    if mode == "crop":
        return hf_resize_crop(rgb, se, w, h, resample)
    return hf_siglip(rgb, h, w, resample)[0]


def ref_pp(mode, resample, name, se, w, h, store="crc"):
    """A resize check: store is "u8" (raw file), "png" or "crc" (CRC-32)."""
    a = pp_ref(mode, resample, name, se, w, h)
    assert a.shape == (h, w, 3), a.shape
    if store == "crc":
        ref = "crc32:%08x" % zlib.crc32(a.tobytes())
    else:
        ref = f"{name.replace('.', '_')}_{mode}{resample}_{se}_{w}x{h}.{store}"
        if store == "png":
            Image.fromarray(a).save(path(ref), optimize=True)
        else:
            a.tofile(path(ref))
    manifest.append(f"pp {mode} {resample} {name} {se} {w} {h} {ref}")


def ref_pp_norm(resample, name, w, h):
    """SigLIP's normalised floats of a squash, as a CHW float32 file."""
    x = hf_siglip(pil_rgb(name), h, w, resample)[1]
    ref = f"{name.replace('.', '_')}_squash{resample}_{w}x{h}_norm.f32"
    x.astype("<f4").tofile(path(ref))
    m = " ".join(repr(v) for v in SIGLIP_MEAN + SIGLIP_STD)
    manifest.append(f"ppnorm squash {resample} {name} 0 {w} {h} {m} {ref}")


def ref_pp_values(resample, name, w, h, indices):
    """A few of SigLIP's normalised floats (CHW index, float32 value)."""
    x = hf_siglip(pil_rgb(name), h, w, resample)[1].reshape(-1)
    for i in indices:
        manifest.append(f"ppval squash {resample} {name} 0 {w} {h} {i} "
                        f"{float(x[i])!r}")


def ref_decode(name):
    a = pil_rgb(name)
    ref = name.replace(".", "_") + ".rgb"
    a.tofile(path(ref))
    manifest.append(f"decode {name} {a.shape[1]} {a.shape[0]} {ref}")
    return a


def ref_crop(name, se, cw, ch, as_png=False):
    a = hf_resize_crop(pil_rgb(name), se, cw, ch)
    assert a.shape == (ch, cw, 3), a.shape
    ref = f"{name.replace('.', '_')}_{se}_{cw}x{ch}"
    if as_png:
        ref += ".png"
        Image.fromarray(a).save(path(ref), optimize=True)
    else:
        ref += ".u8"
        a.tofile(path(ref))
    manifest.append(f"crop {name} {se} {cw} {ch} {ref}")
    return a


def ref_info(name, fmt, orientation, dto):
    im = Image.open(path(name))
    w, h = im.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    t = "none"
    if dto is not None:
        try:
            t = str(calendar.timegm((int(dto[0:4]), int(dto[5:7]), int(dto[8:10]),
                                     int(dto[11:13]), int(dto[14:16]), int(dto[17:19]))))
        except ValueError:
            t = "none"
        if dto.startswith("0000"):
            t = "none"
    manifest.append(f"info {name} {fmt} {w} {h} {orientation} {t}")


def save_jpeg(name, arr, mode="RGB", **kw):
    im = Image.fromarray(arr)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path(name), "JPEG", **kw)


def ycck_jpeg(name, cmyk):
    lib = ctypes.CDLL(ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0")
    lib.tjInitCompress.restype = ctypes.c_void_p
    lib.tjCompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int,
                                ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
                                ctypes.POINTER(ctypes.c_ulong), ctypes.c_int, ctypes.c_int,
                                ctypes.c_int]
    lib.tjFree.argtypes = [ctypes.c_void_p]
    lib.tjDestroy.argtypes = [ctypes.c_void_p]
    h, w = cmyk.shape[:2]
    handle = lib.tjInitCompress()
    buf = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    TJPF_CMYK, TJSAMP_420 = 11, 2
    rc = lib.tjCompress2(handle, cmyk.tobytes(), w, 0, h, TJPF_CMYK, ctypes.byref(buf),
                         ctypes.byref(size), TJSAMP_420, 90, 0)
    assert rc == 0
    data = ctypes.string_at(buf, size.value)
    lib.tjFree(buf)
    lib.tjDestroy(handle)
    assert b"Adobe" in data
    with open(path(name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(path(f))

    # ---- JPEG kinds ----
    save_jpeg("j_base.jpg", photo(48, 32, 1), quality=90)
    save_jpeg("j_444.jpg", photo(40, 30, 2), quality=95, subsampling=0)
    save_jpeg("j_422.jpg", photo(41, 27, 3), quality=85, subsampling=1)
    save_jpeg("j_prog.jpg", photo(50, 38, 4), quality=90, progressive=True)
    save_jpeg("j_gray.jpg", photo(44, 30, 5), mode="L", quality=90)
    save_jpeg("j_cmyk.jpg", photo(36, 28, 6), mode="CMYK", quality=90)
    cmyk = np.array(Image.fromarray(photo(34, 26, 7)).convert("CMYK"))
    cmyk[..., 3] = (np.arange(34)[None, :] * 5 + np.arange(26)[:, None] * 3) % 200
    ycck_jpeg("j_ycck.jpg", cmyk)
    save_jpeg("j_odd.jpg", photo(37, 23, 8), quality=80)
    for k in ("j_base.jpg", "j_444.jpg", "j_422.jpg", "j_prog.jpg", "j_gray.jpg", "j_cmyk.jpg",
              "j_ycck.jpg", "j_odd.jpg"):
        ref_decode(k)
        ref_crop(k, 24, 24, 24)
        ref_info(k, 1, 1, None)
    ref_crop("j_odd.jpg", 64, 64, 64)        # upscaling
    ref_crop("j_odd.jpg", 16, 20, 12)        # non-square crop
    ref_crop("j_base.jpg", 32, 40, 40)       # crop wider than the resized image: zero pad
    ref_crop("j_gray.jpg", 30, 50, 31)       # padded in x and y

    # ---- EXIF orientation ----
    base = photo(40, 24, 9)
    for o in range(1, 9):
        dto = "2021:05:06 07:08:09" if o == 6 else None
        name = f"j_orient{o}.jpg"
        save_jpeg(name, base, quality=92, exif=b"Exif\x00\x00" + tiff_exif(o, dto))
        ref_decode(name)
        ref_crop(name, 20, 20, 20)
        ref_info(name, 1, o, dto)
    dto = "1999:12:31 23:59:58"
    save_jpeg("j_exif_mm.jpg", photo(30, 20, 10), quality=90,
              exif=b"Exif\x00\x00" + tiff_exif(8, dto, big_endian=True))
    ref_decode("j_exif_mm.jpg")
    ref_info("j_exif_mm.jpg", 1, 8, dto)
    save_jpeg("j_exif_date0.jpg", photo(30, 20, 11), quality=90,
              exif=b"Exif\x00\x00" + tiff_exif(1, "0000:00:00 00:00:00"))
    ref_info("j_exif_date0.jpg", 1, 1, "0000:00:00 00:00:00")
    # malformed EXIF: IFD offset beyond the blob, then a garbage blob
    bad = b"Exif\x00\x00II\x2a\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\x01\x00garbage"
    save_jpeg("j_exif_bad.jpg", photo(30, 20, 12), quality=90, exif=bad)
    ref_decode("j_exif_bad.jpg")
    ref_info("j_exif_bad.jpg", 1, 1, None)
    bad2 = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff\xff\xff"
    save_jpeg("j_exif_bad2.jpg", photo(30, 20, 13), quality=90, exif=bad2)
    ref_decode("j_exif_bad2.jpg")

    # ---- PNG kinds ----
    rgb = photo(33, 21, 20)
    Image.fromarray(rgb).save(path("p_rgb.png"))
    rgba = np.concatenate([photo(31, 22, 21), (np.arange(31 * 22).reshape(22, 31, 1) % 256)
                           .astype(np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(path("p_rgba.png"))
    pal = Image.fromarray(photo(35, 25, 22)).quantize(colors=50)
    pal.save(path("p_pal.png"))
    pal.save(path("p_pal_trns.png"), transparency=3)
    Image.fromarray(photo(30, 20, 23)[..., 1]).save(path("p_gray8.png"))
    Image.fromarray(np.concatenate([photo(30, 20, 24)[..., :1], photo(30, 20, 25)[..., :1]],
                                   axis=-1), "LA").save(path("p_la.png"))
    rng = np.random.default_rng(99)
    g = photo(29, 19, 26)[..., 0:1].astype(np.int64)
    png_write("p_gray1.png", (g > 128).astype(np.uint8), 1, 0)
    png_write("p_gray2.png", g >> 6, 2, 0)
    png_write("p_gray4.png", g >> 4, 4, 0)
    png_write("p_gray16.png", g * 257 + rng.integers(0, 257, g.shape), 16, 0)
    png_write("p_la16.png", np.concatenate([g * 256 + 77, g * 100], axis=-1), 16, 4)
    c16 = photo(27, 18, 27).astype(np.int64) * 257 + rng.integers(0, 257, (18, 27, 3))
    png_write("p_rgb16.png", c16, 16, 2)
    a16 = rng.integers(0, 65536, (18, 27, 1))
    png_write("p_rgba16.png", np.concatenate([c16, a16], axis=-1), 16, 6)
    png_write("p_pal4.png", (g >> 4).astype(np.uint8), 4, 3,
              palette=[v for i in range(16) for v in (i * 16, 255 - i * 9, (i * 71) % 256)],
              trns=[255, 0, 128])
    png_write("p_interlaced.png", photo(37, 29, 28), 8, 2, interlace=True)
    png_write("p_interlaced16.png", np.concatenate([c16, a16], axis=-1), 16, 6, interlace=True)
    png_write("p_interlaced_g2.png", g >> 6, 2, 0, interlace=True)
    png_write("p_tiny.png", photo(1, 1, 29), 8, 2)
    png_write("p_orient6.png", photo(26, 16, 30), 8, 2,
              exif=tiff_exif(6, "2010:01:02 03:04:05"))
    # XMP orientation in a text chunk, which Pillow's getexif() uses when the
    # EXIF has no Orientation tag
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
           'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    pi = PngImagePlugin.PngInfo()
    pi.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(photo(26, 16, 34)).save(path("p_xmp6.png"), pnginfo=pi)
    pi = PngImagePlugin.PngInfo()
    pi.add_text("XML:com.adobe.xmp", "<tiff:Orientation>8</tiff:Orientation>", zip=True)
    Image.fromarray(photo(26, 16, 35)).save(path("p_xmp8z.png"), pnginfo=pi)
    pi = PngImagePlugin.PngInfo()
    pi.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(photo(26, 16, 36)).save(path("p_xmp_exif3.png"), pnginfo=pi,
                                            exif=tiff_exif(3))
    # malformed eXIf chunks: ignored, the image still decodes upright
    png_write("p_exif_bad.png", photo(20, 10, 32), 8, 2, exif=b"XXXXgarbagegarbage")
    png_write("p_exif_bad2.png", photo(20, 10, 33), 8, 2, exif=b"II*\x00\xff\xff\xff\x7f")
    for k in ("p_rgb.png", "p_rgba.png", "p_pal.png", "p_pal_trns.png", "p_gray8.png",
              "p_la.png", "p_gray1.png", "p_gray2.png", "p_gray4.png", "p_gray16.png",
              "p_la16.png", "p_rgb16.png", "p_rgba16.png", "p_pal4.png", "p_interlaced.png",
              "p_interlaced16.png", "p_interlaced_g2.png", "p_tiny.png", "p_orient6.png",
              "p_exif_bad.png", "p_exif_bad2.png", "p_xmp6.png", "p_xmp8z.png",
              "p_xmp_exif3.png"):
        ref_decode(k)
        ref_crop(k, 16, 16, 16)
    for k in ("p_rgb.png", "p_pal.png", "p_gray16.png", "p_rgba16.png"):
        ref_info(k, 2, 1, None)
    ref_info("p_orient6.png", 2, 6, "2010:01:02 03:04:05")
    ref_info("p_xmp6.png", 2, 6, None)
    ref_info("p_xmp8z.png", 2, 8, None)
    ref_info("p_xmp_exif3.png", 2, 3, None)
    ref_info("p_exif_bad.png", 2, 1, None)
    ref_info("p_exif_bad2.png", 2, 1, None)
    ref_crop("p_tiny.png", 8, 8, 8)

    # ---- large crops (224 and 336, one non-square), stored as PNG ----
    big = photo(320, 240, 31, noise=0.0)
    save_jpeg("j_big.jpg", big, quality=90)
    ref_crop("j_big.jpg", 224, 224, 224, as_png=True)
    ref_crop("j_big.jpg", 336, 336, 336, as_png=True)
    ref_crop("j_big.jpg", 224, 256, 192, as_png=True)
    ref_info("j_big.jpg", 1, 1, None)
    # normalisation: float32 CHW of one crop
    a = hf_resize_crop(pil_rgb("j_base.jpg"), 24, 24, 24)
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    x.transpose(2, 0, 1).astype("<f4").tofile(path("j_base_jpg_24_norm.f32"))
    manifest.append("norm j_base.jpg 24 24 24 j_base_jpg_24_norm.f32")

    # ---- SigLIP squash and both filters (bilinear 2, bicubic 3) ----
    # Images: landscape 320 x 240 (down and up), odd 37 x 23, portrait
    # 24 x 40 after EXIF rotation, palette, gray, 16-bit RGBA, CMYK.
    sq_images = ("j_big.jpg", "j_odd.jpg", "j_orient6.jpg", "p_pal.png", "p_gray8.png",
                 "p_rgba16.png", "j_cmyk.jpg")
    for resample in (Image.BILINEAR, Image.BICUBIC):
        ref_pp("squash", resample, "j_big.jpg", 0, 224, 224, store="png")
        for k in sq_images:
            for w, h in ((224, 224), (384, 384), (136, 200)):
                if (k, w) != ("j_big.jpg", 224):
                    ref_pp("squash", resample, k, 0, w, h)
            # small outputs, stored whole: strong downscaling of j_big
            ref_pp("squash", resample, k, 0, 24, 16, store="u8")
            ref_pp("squash", resample, k, 0, 13, 29, store="u8")
        # CLIP's shortest side + centre crop with the same filter
        # (bicubic as a CRC only: the "crop" lines above keep its bytes)
        store = "u8" if resample == Image.BILINEAR else "crc"
        ref_pp("crop", resample, "j_big.jpg", 224, 224, 224)
        ref_pp("crop", resample, "j_odd.jpg", 16, 20, 12, store=store)
        ref_pp("crop", resample, "j_gray.jpg", 30, 50, 31, store=store)
        ref_pp("crop", resample, "p_pal.png", 16, 16, 16, store=store)
        ref_pp("crop", resample, "j_orient6.jpg", 64, 64, 48, store=store)
        ref_pp_norm(resample, "j_odd.jpg", 24, 16)
        ref_pp_values(resample, "j_big.jpg", 384, 384,
                      (0, 1, 384 * 200 + 17, 384 * 384 + 5000, 3 * 384 * 384 - 1))

    # ---- bad inputs ----
    open(path("zero.jpg"), "wb").close()
    manifest.append("error zero.jpg EFORMAT")
    with open(path("text.jpg"), "wb") as f:
        f.write(b"this is not an image\n")
    manifest.append("error text.jpg EFORMAT")
    with open(path("random.bin"), "wb") as f:
        f.write(np.random.default_rng(5).integers(0, 256, 2000).astype(np.uint8).tobytes())
    manifest.append("error random.bin EFORMAT")
    data = open(path("j_base.jpg"), "rb").read()
    with open(path("trunc.jpg"), "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    manifest.append("error trunc.jpg EFORMAT")
    pdata = open(path("j_prog.jpg"), "rb").read()
    with open(path("trunc_prog.jpg"), "wb") as f:
        f.write(pdata[:len(pdata) - 40])
    manifest.append("error trunc_prog.jpg EFORMAT")
    with open(path("header_only.jpg"), "wb") as f:
        f.write(data[:data.index(b"\xff\xda") + 2])
    manifest.append("error header_only.jpg EFORMAT")
    png = open(path("p_rgb.png"), "rb").read()
    idat = png.index(b"IDAT")
    with open(path("trunc.png"), "wb") as f:
        f.write(png[:idat + 4 + (len(png) - idat) // 2])
    manifest.append("error trunc.png EFORMAT")
    badcrc = bytearray(png)
    badcrc[idat + 10] ^= 0x55
    with open(path("badcrc.png"), "wb") as f:
        f.write(bytes(badcrc))
    manifest.append("error badcrc.png EFORMAT")
    # a header claiming 60000 x 60000 (3.6 GP) on a small JPEG body
    sof = data.index(b"\xff\xc0")
    huge = bytearray(data)
    huge[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with open(path("huge.jpg"), "wb") as f:
        f.write(bytes(huge))
    manifest.append("error huge.jpg ETOOBIG")
    ihdr = bytearray(png[8:8 + 25])
    ihdr[8:16] = struct.pack(">II", 30000, 20000)
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    with open(path("huge.png"), "wb") as f:
        f.write(png[:8] + bytes(ihdr) + png[33:])
    manifest.append("error huge.png ETOOBIG")
    # content decides, not the name
    with open(path("png_named.jpg"), "wb") as f:
        f.write(png)
    ref_decode("png_named.jpg")
    ref_info("png_named.jpg", 2, 1, None)
    with open(path("jpeg_named.png"), "wb") as f:
        f.write(data)
    ref_info("jpeg_named.png", 1, 1, None)
    # extraneous bytes before a marker: libjpeg warns, Pillow accepts; so do we
    dht = data.index(b"\xff\xc4")
    with open(path("j_extraneous.jpg"), "wb") as f:
        f.write(data[:dht] + b"\x00\x11\x22" + data[dht:])
    ref_decode("j_extraneous.jpg")
    # sampling factors TurboJPEG 2.1's header call cannot classify (Y 2x2,
    # Cb 2x1, Cr 1x1), patched into a 4:4:4 file: the entropy data no longer
    # matches, so the picture is garbage, but a deterministic one
    d444 = bytearray(open(path("j_444.jpg"), "rb").read())
    sof = d444.index(b"\xff\xc0")
    d444[sof + 11], d444[sof + 14], d444[sof + 17] = 0x22, 0x21, 0x11
    with open(path("j_oddsamp.jpg"), "wb") as f:
        f.write(bytes(d444))
    ref_decode("j_oddsamp.jpg")
    # trailing data after the end of image (as some cameras append)
    with open(path("j_trailing.jpg"), "wb") as f:
        f.write(data + b"\x00" * 16 + b"TRAILER")
    ref_decode("j_trailing.jpg")

    with open(path("manifest.txt"), "w") as f:
        f.write("# generated by tools/ref_images.py; see that file for the format\n")
        f.write("\n".join(manifest) + "\n")
    total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
    print(f"{len(os.listdir(OUT))} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
