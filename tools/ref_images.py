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


# ---- the other formats (tests/encoder_image_formats.c) ----------------------
#
# /usr/bin/python3 tools/ref_images.py --formats writes tests/fixtures/images/
# formats/ and its manifest.txt, lines of:
#   decode NAME W H REF.png [TOL]  exact-mode pixels must equal REF (RGB
#                              PNG), or differ by at most TOL where given
#   info NAME FORMAT W H ORIENTATION TIME   clip_image_probe's facts
#   bad NAME CODE              decoding fails with CDX_<CODE>
# The reference is Pillow's exif_transpose + convert("RGB") for what Pillow
# 9.4 reads (WebP, TIFF, GIF, BMP; 16-bit grey keeps its high byte, as for
# PNG), and for HEIC/AVIF and RAW the libraries' own command-line tools:
# heif-convert (libheif-examples) and dcraw_emu -h -w (libraw-bin), their
# output read with Pillow.  HEIC/AVIF files are written by heif-enc
# (x265/aom, libheif-examples); irot/imir transformations are patched into
# them here.  The RAW fixtures are DNGs written here (dng_write): a
# linear-RGB Bayer mosaic (RGGB, 16-bit) of a photo, an identity-like
# colour matrix, and an embedded JPEG preview in IFD0 with the raw data in
# a SubIFD, as cameras' DNGs are laid out.
import subprocess  # noqa: E402
import tempfile  # noqa: E402

FOUT = os.path.join(OUT, "formats")
fmanifest = []


def fpath(name):
    return os.path.join(FOUT, name)


def fref(name, rgb):
    """Writes the reference pixels as an RGB PNG and a decode line."""
    ref = name.replace(".", "_") + ".png"
    Image.fromarray(np.ascontiguousarray(rgb)).save(fpath(ref), optimize=True)
    fmanifest.append(f"decode {name} {rgb.shape[1]} {rgb.shape[0]} {ref}")


def fpil(name):
    """Pillow's reading: exif_transpose, then RGB (16-bit grey: high byte).
    TIFF: Pillow 9.4's TiffImagePlugin.load() already applies the
    Orientation tag (load_end), and exif_transpose would apply it a second
    time (a Pillow bug: orientation 6 would come out turned by 180 degrees
    in the stored size); the reference is the loaded image, turned once."""
    im = Image.open(fpath(name))
    im.getexif()  # before load(), which closes a TIFF's file
    im.load()
    if im.format != "TIFF":
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = (np.array(im).astype(np.int64) >> 8).astype(np.uint8)
        return np.stack([a, a, a], axis=-1)
    return np.array(im.convert("RGB"))


def fpillow_ref(name, tolerance=0):
    fref(name, fpil(name))
    if tolerance:
        fmanifest[-1] += f" {tolerance}"


def tiff_write(name, pages, big_endian=False, tile=None):
    """A minimal uncompressed TIFF writer for what Pillow cannot save
    (16-bit RGB, MinIsWhite, tiles).  pages: list of (samples (h, w, c),
    photometric, extra tags {tag: (type, [values])})."""
    e = ">" if big_endian else "<"
    out = bytearray((b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + b"\0\0\0\0")
    ifd_ptr = 4
    tsize = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}
    tfmt = {1: "B", 2: "B", 3: "H", 4: "I", 5: "II"}
    for samples, photometric, extra in pages:
        h, w, c = samples.shape
        bps = samples.dtype.itemsize * 8
        if tile:
            tw, th = tile
            chunks = []
            for ty in range(0, h, th):
                for tx in range(0, w, tw):
                    t = np.zeros((th, tw, c), samples.dtype)
                    part = samples[ty:ty + th, tx:tx + tw]
                    t[:part.shape[0], :part.shape[1]] = part
                    chunks.append(t.astype(samples.dtype.newbyteorder(e)).tobytes())
        else:
            chunks = [samples.astype(samples.dtype.newbyteorder(e)).tobytes()]
        offsets = []
        for ch in chunks:
            offsets.append(len(out))
            out += ch
        tags = {256: (4, [w]), 257: (4, [h]), 258: (3, [bps] * c), 259: (3, [1]),
                262: (3, [photometric]), 277: (3, [c]), 284: (3, [1])}
        if tile:
            tags.update({322: (4, [tile[0]]), 323: (4, [tile[1]]),
                         324: (4, offsets), 325: (4, [len(x) for x in chunks])})
        else:
            tags.update({273: (4, offsets), 278: (4, [h]), 279: (4, [len(chunks[0])])})
        tags.update(extra)
        if len(out) % 2:
            out += b"\0"
        ifd_off = len(out)
        struct.pack_into(e + "I", out, ifd_ptr, ifd_off)
        n = len(tags)
        blob_off = ifd_off + 2 + 12 * n + 4
        ifd = struct.pack(e + "H", n)
        blob = b""
        for tag in sorted(tags):
            typ, vals = tags[tag]
            if tag == 34665:
                vals = [0]  # patched below
            data = b"".join(struct.pack(e + tfmt[typ], *(v if isinstance(v, tuple) else (v,)))
                            for v in vals) if typ != 2 else bytes(vals)
            cnt = len(vals)
            if len(data) <= 4:
                ifd += struct.pack(e + "HHI", tag, typ, cnt) + data.ljust(4, b"\0")
            else:
                ifd += struct.pack(e + "HHII", tag, typ, cnt, blob_off + len(blob))
                blob += data + (b"\0" if len(data) % 2 else b"")
        out += ifd
        ifd_ptr = len(out)
        out += b"\0\0\0\0" + blob
        if 34665 in tags:
            # an Exif IFD with DateTimeOriginal (tags[34665] = (4, [text]))
            # at the end, its offset patched into the entry
            text = tags[34665][1][0].encode() + b"\0"
            if len(out) % 2:
                out += b"\0"
            at = len(out)
            entry = ifd_off + 2 + 12 * sorted(tags).index(34665) + 8
            struct.pack_into(e + "I", out, entry, at)
            out += struct.pack(e + "HHHII", 1, 0x9003, 2, len(text), at + 18)
            out += b"\0\0\0\0" + text
    with open(fpath(name), "wb") as f:
        f.write(bytes(out))


def webp_fixtures():
    a = photo(64, 40, 31)
    Image.fromarray(a).save(fpath("w_lossy.webp"), quality=80, method=4)
    Image.fromarray(a).save(fpath("w_lossless.webp"), lossless=True)
    rgba = np.dstack([photo(48, 36, 32), np.tile(np.arange(48, dtype=np.uint8) * 5, (36, 1))])
    Image.fromarray(rgba, "RGBA").save(fpath("w_alpha.webp"), quality=90)
    Image.fromarray(rgba, "RGBA").save(fpath("w_alpha_lossless.webp"), lossless=True)
    frames = [Image.fromarray(photo(56, 40, 33 + i)) for i in range(3)]
    frames[0].save(fpath("w_anim.webp"), save_all=True, append_images=frames[1:],
                   duration=100, loop=0, quality=85)
    for name in ("w_lossy.webp", "w_lossless.webp", "w_alpha.webp",
                 "w_alpha_lossless.webp", "w_anim.webp"):
        fpillow_ref(name)
    fmanifest.append("info w_lossy.webp 5 64 40 1 none")
    for o in (3, 6, 8):
        im = Image.fromarray(photo(52, 34, 40 + o))
        ex = im.getexif()
        ex[0x0112] = o
        im.save(fpath(f"w_orient{o}.webp"), quality=85, exif=ex.tobytes())
        fpillow_ref(f"w_orient{o}.webp")
    fmanifest.append("info w_orient6.webp 5 34 52 6 none")


def tiff_fixtures():
    a = photo(45, 29, 51)
    Image.fromarray(a).save(fpath("t_rgb8.tif"))
    Image.fromarray(a).save(fpath("t_rgb8_lzw.tif"), compression="tiff_lzw")
    Image.fromarray(a).save(fpath("t_rgb8_deflate.tif"), compression="tiff_adobe_deflate")
    Image.fromarray(a).convert("L").save(fpath("t_gray8.tif"))
    Image.fromarray(a).convert("1").save(fpath("t_bilevel.tif"))
    Image.fromarray(a).convert("P", palette=Image.ADAPTIVE, colors=40).save(fpath("t_palette.tif"))
    Image.fromarray(a).convert("CMYK").save(fpath("t_cmyk.tif"))
    rgba = np.dstack([a, np.tile(np.arange(45, dtype=np.uint8) * 5, (29, 1))])
    Image.fromarray(rgba, "RGBA").save(fpath("t_rgba.tif"))
    rng = np.random.default_rng(52)
    a16 = (a.astype(np.uint16) * 257 + rng.integers(0, 256, a.shape)).astype(np.uint16)
    tiff_write("t_rgb16.tif", [(a16, 2, {})])
    tiff_write("t_rgb16_be.tif", [(a16, 2, {})], big_endian=True)
    tiff_write("t_gray16.tif", [(a16[:, :, :1], 1, {})])
    tiff_write("t_miniswhite.tif", [(a[:, :, 1:2], 0, {})])
    tiff_write("t_tiled.tif", [(a, 2, {})], tile=(16, 16))
    tiff_write("t_multipage.tif", [(a, 2, {}), (photo(20, 10, 53), 2, {})])
    for name in ("t_rgb8.tif", "t_rgb8_lzw.tif", "t_rgb8_deflate.tif", "t_gray8.tif",
                 "t_bilevel.tif", "t_palette.tif", "t_cmyk.tif", "t_rgba.tif",
                 "t_rgb16.tif", "t_rgb16_be.tif", "t_gray16.tif", "t_miniswhite.tif",
                 "t_tiled.tif", "t_multipage.tif"):
        fpillow_ref(name)
    for o in range(1, 9):
        extra = {274: (3, [o])}
        if o == 6:
            extra[34665] = (4, ["2018:05:06 07:08:09"])
        tiff_write(f"t_orient{o}.tif", [(photo(30, 18, 60 + o), 2, extra)])
        fpillow_ref(f"t_orient{o}.tif")
    fmanifest.append("info t_orient6.tif 6 18 30 6 %d" %
                     calendar.timegm((2018, 5, 6, 7, 8, 9)))
    fmanifest.append("info t_rgb8.tif 6 45 29 1 none")


def lzw_raw(indices, min_code=8):
    """GIF LZW data without compression: every pixel a literal code, a
    clear code often enough that the code size never grows."""
    clear, stop = 1 << min_code, (1 << min_code) + 1
    size = min_code + 1
    codes, n = [clear], 0
    for v in indices:
        codes.append(int(v))
        n += 1
        if n == (1 << min_code) - 4:
            codes.append(clear)
            n = 0
    codes.append(stop)
    bits, nbits, out = 0, 0, bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += size
        while nbits >= 8:
            out.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 255)
    blocks = bytearray([min_code])
    for i in range(0, len(out), 255):
        blocks += bytes([len(out[i:i + 255])]) + out[i:i + 255]
    return bytes(blocks + b"\0")


def gif_write(name, screen, gpal, frame_box, idx, lpal=None, transparent=None,
              interlace=False):
    """A GIF with one frame at frame_box (x, y, w, h) on a screen of size
    `screen`; idx: (h, w) indices in display order."""
    sw, sh = screen
    data = bytearray(b"GIF89a" + struct.pack("<HH", sw, sh))
    if gpal is not None:
        data += bytes([0xF7, 0, 0]) + bytes(gpal)
    else:
        data += bytes([0x00, 0, 0])
    if transparent is not None:
        data += bytes([0x21, 0xF9, 4, 1, 0, 0, transparent, 0])
    x, y, w, h = frame_box
    flags = (0x87 if lpal is not None else 0) | (0x40 if interlace else 0)
    data += b"\x2c" + struct.pack("<HHHH", x, y, w, h) + bytes([flags])
    if lpal is not None:
        data += bytes(lpal)
    rows = list(range(h))
    if interlace:
        rows = list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))
    data += lzw_raw(np.concatenate([idx[r] for r in rows]))
    data += b"\x3b"
    with open(fpath(name), "wb") as f:
        f.write(bytes(data))


def gif_fixtures():
    a = photo(64, 40, 71)
    p = Image.fromarray(a).quantize(colors=64, method=Image.MEDIANCUT)
    p.save(fpath("g_basic.gif"))
    p.save(fpath("g_interlaced.gif"), interlace=True)
    frames = [Image.fromarray(photo(48, 32, 72 + i)).quantize(colors=32) for i in range(3)]
    frames[0].save(fpath("g_anim.gif"), save_all=True, append_images=frames[1:],
                   duration=80, loop=0)
    Image.fromarray(a).convert("L").save(fpath("g_gray.gif"))
    rng = np.random.default_rng(73)
    gpal = rng.integers(0, 256, 768).astype(np.uint8)
    lpal = rng.integers(0, 256, 768).astype(np.uint8)
    idx = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    gif_write("g_offset.gif", (50, 40), gpal, (7, 5, 30, 20), idx, transparent=9)
    gif_write("g_local.gif", (30, 20), gpal, (0, 0, 30, 20), idx, lpal=lpal)
    gif_write("g_beyond.gif", (20, 12), gpal, (4, 3, 30, 20), idx)
    gif_write("g_ilace.gif", (30, 20), gpal, (0, 0, 30, 20), idx, interlace=True)
    gif_write("g_nopal.gif", (30, 20), None, (0, 0, 30, 20), idx)
    for name in ("g_basic.gif", "g_interlaced.gif", "g_anim.gif", "g_gray.gif",
                 "g_offset.gif", "g_local.gif", "g_beyond.gif", "g_ilace.gif", "g_nopal.gif"):
        fpillow_ref(name)
    fmanifest.append("info g_beyond.gif 7 34 23 1 none")


def bmp_write(name, w, h, bpp, rows, palette=b"", top_down=False, masks=None):
    """A BMP (BITMAPINFOHEADER, or V4 with masks): rows are the packed
    pixel rows in display order, unpadded."""
    stride = (w * bpp + 31) // 32 * 4
    pix = b"".join(r.ljust(stride, b"\0") for r in (rows if top_down else rows[::-1]))
    hsz = 108 if masks else 40
    off = 14 + hsz + len(palette)
    hdr = struct.pack("<2sIHHI", b"BM", off + len(pix), 0, 0, off)
    info = struct.pack("<IiiHHIIiiII", hsz, w, -h if top_down else h, 1, bpp,
                       3 if masks else 0, len(pix), 2835, 2835,
                       len(palette) // 4, 0)
    if masks:
        info += struct.pack("<IIII", *masks) + b"\0" * (108 - 40 - 16)
    with open(fpath(name), "wb") as f:
        f.write(hdr + info + palette + pix)


def bmp_fixtures():
    a = photo(37, 23, 81)
    Image.fromarray(a).save(fpath("b_24.bmp"))
    Image.fromarray(a).convert("P", palette=Image.ADAPTIVE, colors=100).save(fpath("b_8.bmp"))
    Image.fromarray(a).convert("1").save(fpath("b_1.bmp"))
    Image.fromarray(a).convert("L").save(fpath("b_gray.bmp"))
    rows = [bytes(a[y, :, ::-1].tobytes()) for y in range(23)]
    bmp_write("b_topdown.bmp", 37, 23, 24, rows, top_down=True)
    rows32 = [b"".join(bytes([p[2], p[1], p[0], 0]) for p in a[y]) for y in range(23)]
    bmp_write("b_32.bmp", 37, 23, 32, rows32)
    rng = np.random.default_rng(82)
    pal = bytes(rng.integers(0, 256, 64).astype(np.uint8))
    idx = rng.integers(0, 16, (23, 37))
    rows4 = [bytes((int(r[i]) << 4) | (int(r[i + 1]) if i + 1 < 37 else 0)
                   for i in range(0, 37, 2)) for r in idx]
    bmp_write("b_4.bmp", 37, 23, 4, rows4, palette=pal)
    v = rng.integers(0, 1 << 16, (23, 37)).astype("<u2")
    bmp_write("b_565.bmp", 37, 23, 16, [r.tobytes() for r in v],
              masks=(0xF800, 0x07E0, 0x001F, 0))
    for name in ("b_24.bmp", "b_8.bmp", "b_1.bmp", "b_gray.bmp", "b_topdown.bmp", "b_32.bmp",
                 "b_4.bmp"):
        fpillow_ref(name)
    # 16-bit BMPs: stb_image widens a 5/6-bit sample by replicating its
    # bits, Pillow by v * 255 / 31 (truncated); image_bmp.c widens as
    # Pillow does, so they are equal
    fpillow_ref("b_565.bmp")
    fmanifest.append("info b_24.bmp 8 37 23 1 none")


def tool_ref(name, cmd, out):
    """The reference made by a library's command-line tool: its output
    image read with Pillow as RGB."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rgb = np.array(Image.open(out).convert("RGB"))
    os.unlink(out)
    fref(name, rgb)


def bmff_boxes(data, start, end):
    p = start
    while p + 8 <= end:
        size, typ = struct.unpack(">I4s", data[p:p + 8])
        yield p, size, typ
        p += size


def heif_add_property(data, prop):
    """Adds property box `prop` to ipco and associates it (essential) with
    the primary item; fixes the sizes of the boxes around and the iloc
    offsets behind."""
    data = bytearray(data)
    meta = next(p for p, s, t in bmff_boxes(data, 0, len(data)) if t == b"meta")
    msize = struct.unpack(">I", data[meta:meta + 4])[0]
    inner = {t: (p, s) for p, s, t in bmff_boxes(data, meta + 12, meta + msize)}
    pitm = inner[b"pitm"][0]
    primary = struct.unpack(">H", data[pitm + 12:pitm + 14])[0]
    iprp, iprp_size = inner[b"iprp"]
    sub = {t: (p, s) for p, s, t in bmff_boxes(data, iprp + 8, iprp + iprp_size)}
    ipco, ipco_size = sub[b"ipco"]
    ipma, ipma_size = sub[b"ipma"]
    nprops = sum(1 for _ in bmff_boxes(data, ipco + 8, ipco + ipco_size))
    assert data[ipma + 8] == 0 and data[ipma + 11] & 1 == 0  # version 0, 8-bit indices
    # find the primary item's entry in ipma
    q = ipma + 12
    count = struct.unpack(">I", data[q:q + 4])[0]
    q += 4
    for _ in range(count):
        item, n = struct.unpack(">HB", data[q:q + 3])
        if item == primary:
            data[q + 2] = n + 1
            data.insert(q + 3 + n, 0x80 | (nprops + 1))
            break
        q += 3 + n
    else:
        raise RuntimeError("primary item not in ipma")
    data[ipco + ipco_size:ipco + ipco_size] = prop
    delta = len(prop) + 1
    # ipco before ipma: insert first moved ipma by len(prop)
    for off, grow in ((meta, delta), (iprp, delta), (ipco, len(prop)), (ipma + len(prop), 1)):
        size = struct.unpack(">I", data[off:off + 4])[0]
        struct.pack_into(">I", data, off, size + grow)
    # iloc (after iprp or before it)
    iloc, _ = inner[b"iloc"]
    if iloc > iprp:
        iloc += delta
    ver = data[iloc + 8]
    q = iloc + 12
    osz, lsz = data[q] >> 4, data[q] & 15
    bsz, isz = data[q + 1] >> 4, (data[q + 1] & 15 if ver in (1, 2) else 0)
    q += 2
    n = struct.unpack(">H" if ver < 2 else ">I", data[q:q + (2 if ver < 2 else 4)])[0]
    q += 2 if ver < 2 else 4

    def rd(sz):
        return int.from_bytes(data[q:q + sz], "big") if sz else 0

    for _ in range(n):
        q += 2 if ver < 2 else 4
        method = 0
        if ver in (1, 2):
            method = struct.unpack(">H", data[q:q + 2])[0] & 15
            q += 2
        q += 2  # data reference index
        if method == 0 and bsz:
            data[q:q + bsz] = (rd(bsz) + delta).to_bytes(bsz, "big")
        base = rd(bsz)
        q += bsz
        ext = struct.unpack(">H", data[q:q + 2])[0]
        q += 2
        for _ in range(ext):
            q += isz
            if method == 0 and not bsz:
                data[q:q + osz] = (rd(osz) + delta).to_bytes(osz, "big")
            q += osz + lsz
        del base
    return bytes(data)


def heif_fixtures():
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "src.png")
    Image.fromarray(photo(64, 40, 91)).save(src)
    rgba = np.dstack([photo(48, 32, 92), np.tile(np.arange(48, dtype=np.uint8) * 5, (32, 1))])
    srca = os.path.join(tmp, "srca.png")
    Image.fromarray(rgba, "RGBA").save(srca)
    # EXIF orientation 6 and a capture time in a JPEG: heif-enc copies its
    # EXIF block (the pixels stay as stored)
    ex_src = os.path.join(tmp, "ex.jpg")
    Image.fromarray(photo(64, 40, 93)).save(
        ex_src, quality=95, exif=b"Exif\0\0" + tiff_exif(6, "2021:07:04 12:34:56"))
    # 16-bit input: heif-enc writes a 10-bit HEIC (its AVIF encoder, aom
    # 3.6, aborts on 10-bit input: no 10-bit AVIF fixture)
    src16 = os.path.join(tmp, "src16.png")
    a16 = photo(64, 40, 95).astype(np.uint16) * 257
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in a16)
    with open(src16, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" +
                png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 40, 16, 2, 0, 0, 0)) +
                png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    # with a thumbnail item (heif-enc -t: 104 x 64), as iPhones store one:
    # what fast mode decodes for the demo model (min_short 64)
    srct = os.path.join(tmp, "srct.png")
    Image.fromarray(photo(192, 120, 96, noise=3)).save(srct)
    # ... and with EXIF orientation 3, where fast mode must not trust the
    # thumbnail (no reference: tests/encoder_image_formats.c checks sizes)
    srct3 = os.path.join(tmp, "srct3.jpg")
    Image.fromarray(photo(192, 120, 96, noise=3)).save(
        srct3, quality=90, exif=b"Exif\0\0" + tiff_exif(3))
    runs = [("h_basic.heic", src, []), ("h_alpha.heic", srca, []),
            ("h_thumb.heic", srct, ["-t", "104"]),
            ("h_thumb_exif3.heic", srct3, ["-t", "104"]),
            ("h_10bit.heic", src16, ["-b", "10"]),
            ("h_exif6.heic", ex_src, []), ("a_basic.avif", src, []),
            ("a_alpha.avif", srca, [])]
    for name, s, extra in runs:
        subprocess.run(["heif-enc", "-q", "80", "-o", fpath(name)] + extra + [s], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # transformations: rotation by 90 degrees anticlockwise (irot 1), a
    # mirror about the vertical axis (imir 1), and irot on the file with
    # EXIF orientation 6 (the transform wins, EXIF is not applied again)
    base = open(fpath("h_basic.heic"), "rb").read()
    with open(fpath("h_irot.heic"), "wb") as f:
        f.write(heif_add_property(base, struct.pack(">I4sB", 9, b"irot", 1)))
    with open(fpath("h_imir.heic"), "wb") as f:
        f.write(heif_add_property(base, struct.pack(">I4sB", 9, b"imir", 1)))
    exif6 = open(fpath("h_exif6.heic"), "rb").read()
    with open(fpath("h_irot_exif6.heic"), "wb") as f:
        f.write(heif_add_property(exif6, struct.pack(">I4sB", 9, b"irot", 3)))
    abase = open(fpath("a_basic.avif"), "rb").read()
    with open(fpath("a_irot.avif"), "wb") as f:
        f.write(heif_add_property(abase, struct.pack(">I4sB", 9, b"irot", 2)))
    for name in ("h_basic.heic", "h_alpha.heic", "h_exif6.heic", "h_irot.heic", "h_imir.heic",
                 "h_irot_exif6.heic", "a_basic.avif", "a_alpha.avif", "a_irot.avif",
                 "h_thumb.heic", "h_10bit.heic"):
        out = os.path.join(tmp, "out.png")
        tool_ref(name, ["heif-convert", fpath(name), out], out)
    # 10 bits: heif-convert writes a 16-bit PNG, read by Pillow as its high
    # bytes, which equal libheif's own conversion to 8 bits
    t = calendar.timegm((2021, 7, 4, 12, 34, 56))
    fmanifest.append("info h_basic.heic 3 64 40 1 none")
    fmanifest.append(f"info h_exif6.heic 3 64 40 1 {t}")
    fmanifest.append("info h_irot.heic 3 40 64 1 none")
    fmanifest.append(f"info h_irot_exif6.heic 3 40 64 1 {t}")
    fmanifest.append("info a_irot.avif 4 64 40 1 none")
    # a bomb: the primary image's ispe says 60000 x 60000
    d = bytearray(base)
    i = d.index(b"ispe")
    struct.pack_into(">II", d, i + 8, 60000, 60000)
    with open(fpath("h_bomb.heic"), "wb") as f:
        f.write(bytes(d))
    fmanifest.append("bad h_bomb.heic ETOOBIG")
    os.rmdir(tmp) if not os.listdir(tmp) else None


def srgb_to_linear(a):
    x = a.astype(np.float64) / 255
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def dng_write(name, rgb, orientation=1, preview=True, dto=None, size=None, bits=16):
    """A DNG: IFD0 a JPEG preview (NewSubFileType 1) of the photo, SubIFD
    the CFA data (RGGB, 16 or 8-bit) of its linear light."""
    h, w = rgb.shape[:2]
    lin = srgb_to_linear(rgb)
    cfa = np.empty((h, w))
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    black, white = (256, 60256) if bits == 16 else (0, 255)
    raw = np.clip(np.rint(cfa * (white - black) + black), 0, white).astype(
        "<u2" if bits == 16 else np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    jpg = buf.getvalue()
    # XYZ (D65) to linear sRGB: the camera "is" linear sRGB
    cm = [(3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570)]
    srat = [(int(round(v * 10000)), 10000) for row in cm for v in row]
    rw, rh = size if size else (w, h)
    sub = {254: (4, [0]), 256: (4, [rw]), 257: (4, [rh]), 258: (3, [bits]), 259: (3, [1]),
           262: (3, [32803]), 277: (3, [1]), 284: (3, [1]),
           33421: (3, [2, 2]), 33422: (1, [0, 1, 1, 2]),
           50714: (4, [black]), 50717: (4, [white])}
    tags0 = {254: (4, [1]), 271: (2, list(b"clipdex\0")), 272: (2, list(b"test DNG\0")),
             274: (3, [orientation]), 50706: (1, [1, 4, 0, 0]), 50707: (1, [1, 1, 0, 0]),
             50708: (2, list(b"clipdex test DNG\0")), 50778: (3, [21]),
             50721: (10, srat), 50728: (5, [(1, 1), (1, 1), (1, 1)])}
    if dto:
        tags0[36867] = (2, list(dto.encode() + b"\0"))
        tags0[306] = (2, list(dto.encode() + b"\0"))
    e = "<"
    tfmt = {1: "B", 2: "B", 3: "H", 4: "I", 5: "II", 10: "ii"}
    out = bytearray(b"II\x2a\x00\0\0\0\0")
    raw_off = len(out)
    out += raw.tobytes()
    jpg_off = len(out)
    out += jpg + (b"\0" if len(jpg) % 2 else b"")
    sub.update({273: (4, [raw_off]), 278: (4, [rh]), 279: (4, [raw.nbytes])})
    if preview:
        tags0.update({256: (4, [w]), 257: (4, [h]), 258: (3, [8, 8, 8]), 259: (3, [7]),
                      262: (3, [6]), 277: (3, [3]), 273: (4, [jpg_off]), 278: (4, [h]),
                      279: (4, [len(jpg)]), 284: (3, [1])})
    else:
        tags0.update({256: (4, [1]), 257: (4, [1]), 258: (3, [8]), 259: (3, [1]),
                      262: (3, [1]), 277: (3, [1]), 273: (4, [jpg_off]), 278: (4, [1]),
                      279: (4, [1])})

    def ifd(tags, at, extra_ptr=None):
        n = len(tags)
        blob_off = at + 2 + 12 * n + 4
        body, blob = struct.pack(e + "H", n), b""
        for tag in sorted(tags):
            typ, vals = tags[tag]
            data = bytes(vals) if typ in (1, 2) and not isinstance(vals[0], tuple) else \
                b"".join(struct.pack(e + tfmt[typ], *(v if isinstance(v, tuple) else (v,)))
                         for v in vals)
            if len(data) <= 4:
                body += struct.pack(e + "HHI", tag, typ, len(vals)) + data.ljust(4, b"\0")
            else:
                body += struct.pack(e + "HHII", tag, typ, len(vals), blob_off + len(blob))
                blob += data + (b"\0" if len(data) % 2 else b"")
        return body + b"\0\0\0\0" + blob

    sub_off = len(out)
    out += ifd(sub, sub_off)
    if len(out) % 2:
        out += b"\0"
    ifd0_off = len(out)
    tags0[330] = (4, [sub_off])
    out += ifd(tags0, ifd0_off)
    struct.pack_into("<I", out, 4, ifd0_off)
    with open(fpath(name), "wb") as f:
        f.write(bytes(out))


def raw_fixtures():
    tmp = tempfile.mkdtemp()
    for name, o in (("r_basic.dng", 1), ("r_orient6.dng", 6), ("r_orient3.dng", 3),
                    ("r_orient8.dng", 8)):
        dng_write(name, photo(96, 64, 100 + o), orientation=o, bits=8,
                  dto="2019:02:03 04:05:06" if o == 1 else None)
    # large enough that the half-size demosaic is not smaller than the
    # demo model's input (64): fast mode's preview against it
    dng_write("r_large8.dng", photo(144, 128, 113), bits=8)
    dng_write("r_large16.dng", photo(144, 128, 114), orientation=6)
    dng_write("r_nopreview.dng", photo(96, 64, 111), preview=False, bits=8)
    for name in ("r_basic.dng", "r_orient6.dng", "r_orient3.dng", "r_orient8.dng",
                 "r_nopreview.dng", "r_large8.dng", "r_large16.dng"):
        # dcraw_emu writes <input>.ppm beside its input
        src = os.path.join(tmp, name)
        with open(src, "wb") as f:
            f.write(open(fpath(name), "rb").read())
        tool_ref(name, ["dcraw_emu", "-h", "-w", src], src + ".ppm")
        os.unlink(src)
    os.rmdir(tmp)
    t = calendar.timegm((2019, 2, 3, 4, 5, 6))
    fmanifest.append(f"info r_basic.dng 9 96 64 1 {t}")
    fmanifest.append("info r_orient6.dng 9 64 96 6 none")
    # a bomb: the sensor is 60000 x 60000, the file a few KB
    dng_write("r_bomb.dng", photo(32, 16, 112), size=(60000, 60000))
    fmanifest.append("bad r_bomb.dng ETOOBIG")


def bomb_fixtures():
    # headers that promise far more pixels than the default limit
    with open(fpath("g_bomb.gif"), "wb") as f:
        f.write(b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\0\0\0" + b"\x2c" +
                struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\0\x08\x02\x00\x01\0\x3b")
    fmanifest.append("bad g_bomb.gif ETOOBIG")
    hdr = struct.pack("<2sIHHI", b"BM", 1000, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0)
    with open(fpath("b_bomb.bmp"), "wb") as f:
        f.write(hdr + b"\0" * 64)
    fmanifest.append("bad b_bomb.bmp ETOOBIG")
    tiff_write("t_bomb.tif", [(np.zeros((1, 1, 3), np.uint8), 2, {256: (4, [100000]),
                                                                 257: (4, [100000])})])
    fmanifest.append("bad t_bomb.tif ETOOBIG")
    # a small image whose tile is 2^26 pixels wide (found by tiff_fuzz:
    # the tile buffer is an allocation the image's size does not bound)
    tiff_write("t_tilebomb.tif", [(photo(20, 12, 121), 2, {322: (4, [1 << 26])})],
               tile=(16, 16))
    fmanifest.append("bad t_tilebomb.tif EFORMAT")
    # a lossless bitstream whose header says 16384 x 16384
    buf = io.BytesIO()
    Image.fromarray(photo(16, 16, 120)).save(buf, "WEBP", lossless=True)
    d = bytearray(buf.getvalue())
    assert d[12:16] == b"VP8L" and d[20] == 0x2F
    bits = int.from_bytes(d[21:25], "little")
    bits = (bits & ~((1 << 28) - 1)) | 16383 | (16383 << 14)
    d[21:25] = bits.to_bytes(4, "little")
    with open(fpath("w_bomb.webp"), "wb") as f:
        f.write(bytes(d))
    fmanifest.append("bad w_bomb.webp ETOOBIG")
    # unsupported and corrupt files
    with open(fpath("x_rle8.bmp"), "wb") as f:
        f.write(struct.pack("<2sIHHI", b"BM", 14 + 40 + 1024 + 8, 0, 0, 14 + 40 + 1024) +
                struct.pack("<IiiHHIIiiII", 40, 4, 2, 1, 8, 1, 8, 0, 0, 256, 0) +
                b"\0" * 1024 + b"\x04\x01\0\0\x04\x02\0\x01")
    fmanifest.append("bad x_rle8.bmp EFORMAT")


def formats_main():
    os.makedirs(FOUT, exist_ok=True)
    for f in os.listdir(FOUT):
        os.unlink(fpath(f))
    webp_fixtures()
    tiff_fixtures()
    gif_fixtures()
    bmp_fixtures()
    heif_fixtures()
    raw_fixtures()
    bomb_fixtures()
    with open(fpath("manifest.txt"), "w") as f:
        f.write("# generated by tools/ref_images.py --formats; see that file\n")
        f.write("\n".join(fmanifest) + "\n")
    total = sum(os.path.getsize(fpath(f)) for f in os.listdir(FOUT))
    print(f"formats: {len(os.listdir(FOUT))} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["--formats"]:
        formats_main()
    else:
        main()
