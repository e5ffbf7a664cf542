#!/usr/bin/env python3
"""The HEIC / AVIF / JPEG XL / DNG decode benchmark's Python side.

    python3 pil_format_throughput.py make DIR [N]     # N photos in 4 formats
    python3 pil_format_throughput.py bench DIR [PASSES]

`make` takes N JPEG photos from /usr/share/backgrounds (Debian:
gnome-backgrounds, mate-backgrounds), scales them to 1920 pixels on the
long side, and writes each as HEIC (heif-enc -q 90), AVIF (avifenc, 8-bit
4:2:0, default quality), JPEG XL (cjxl -d 1) and a linear DNG (written
here). `bench` decodes them to 8-bit RGB with PIL, one thread: pillow-heif
(HEIC), pillow-avif-plugin (AVIF), pillow-jxl-plugin (JPEG XL), rawpy
(LibRaw, DNG: the same development settings as imgsim's), as imgsim's
`format_throughput` example does with its decoders.
"""
import glob
import os
import struct
import subprocess
import sys
import time

from PIL import Image


def linear_dng(img, path):
    """A LinearRaw DNG whose camera space is linear sRGB (see
    tests/common/formats.rs, which writes the same)."""
    w, h = img.size
    lut = []
    for v in range(256):
        c = v / 255
        lin = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        lut.append(struct.pack("<H", round(lin * 65535)))
    pixels = b"".join(lut[v] for v in img.tobytes())
    m = [3.2404542, -1.5371385, -0.4985314, -0.9692660, 1.8760108, 0.0415560,
         0.0556434, -0.2040259, 1.0572252]
    matrix = b"".join(struct.pack("<ii", round(v * 10000), 10000) for v in m)
    entries = [
        (254, 4, 1, struct.pack("<I", 0)), (256, 4, 1, struct.pack("<I", w)),
        (257, 4, 1, struct.pack("<I", h)), (258, 3, 3, struct.pack("<HHH", 16, 16, 16)),
        (259, 3, 1, struct.pack("<H", 1)), (262, 3, 1, struct.pack("<H", 34892)),
        (271, 2, 7, b"imgsim\0"), (272, 2, 5, b"test\0"), (273, 4, 1, None),
        (274, 3, 1, struct.pack("<H", 1)), (277, 3, 1, struct.pack("<H", 3)),
        (278, 4, 1, struct.pack("<I", h)), (279, 4, 1, struct.pack("<I", len(pixels))),
        (284, 3, 1, struct.pack("<H", 1)), (50706, 1, 4, bytes([1, 4, 0, 0])),
        (50707, 1, 4, bytes([1, 1, 0, 0])), (50708, 2, 12, b"imgsim test\0"),
        (50717, 4, 1, struct.pack("<I", 65535)), (50721, 10, 9, matrix),
        (50728, 5, 3, struct.pack("<IIIIII", 1, 1, 1, 1, 1, 1)), (50778, 3, 1, struct.pack("<H", 21)),
    ]
    data_start = 8 + 2 + 12 * len(entries) + 4
    extra_len = sum(len(v) + len(v) % 2 for _, _, _, v in entries if v is not None and len(v) > 4)
    strip = data_start + extra_len
    out, extra = bytearray(b"II*\0" + struct.pack("<IH", 8, len(entries))), bytearray()
    for tag, ty, count, value in entries:
        if value is None:
            value = struct.pack("<I", strip)
        out += struct.pack("<HHI", tag, ty, count)
        if len(value) <= 4:
            out += value.ljust(4, b"\0")
        else:
            out += struct.pack("<I", data_start + len(extra))
            extra += value + (b"\0" if len(value) % 2 else b"")
    out += struct.pack("<I", 0) + extra
    assert len(out) == strip
    with open(path, "wb") as f:
        f.write(out + pixels)


def make(folder, n):
    os.makedirs(folder, exist_ok=True)
    photos = sorted(glob.glob("/usr/share/backgrounds/**/*.jpg", recursive=True))[:n]
    for i, src in enumerate(photos):
        img = Image.open(src).convert("RGB")
        img.thumbnail((1920, 1920))
        png = os.path.join(folder, f"p{i}.png")
        img.save(png)
        for ext, cmd in [("heic", ["heif-enc", "-q", "90", "-o", "{out}", png]),
                         ("avif", ["avifenc", png, "{out}"]),
                         ("jxl", ["cjxl", "-d", "1", png, "{out}"])]:
            out = os.path.join(folder, f"p{i}.{ext}")
            subprocess.run([c.replace("{out}", out) for c in cmd], check=True, capture_output=True)
        linear_dng(img, os.path.join(folder, f"p{i}.dng"))
        os.remove(png)
    print(f"{len(photos)} photos in 4 formats under {folder}")


def bench(folder, passes):
    import pillow_heif
    pillow_heif.register_heif_opener()
    try:
        import pillow_avif  # noqa: F401 (registers AVIF)
    except ImportError:
        print("pillow-avif-plugin missing: AVIF through pillow-heif", file=sys.stderr)
        pillow_heif.register_avif_opener()
    import pillow_jxl  # noqa: F401 (registers JPEG XL)
    import rawpy

    def pil(path):
        return Image.open(path).convert("RGB").tobytes()

    def raw(path):
        with rawpy.imread(path) as r:
            return r.postprocess(output_color=rawpy.ColorSpace.sRGB, gamma=(2.4, 12.92),
                                 no_auto_bright=True, output_bps=8).tobytes()

    files = sorted(glob.glob(os.path.join(folder, "*")))
    for ext, fn in [("heic", pil), ("avif", pil), ("jxl", pil), ("dng", raw)]:
        subset = [f for f in files if f.endswith("." + ext)]
        pixels = sum(len(fn(f)) // 3 for f in subset)
        t = time.perf_counter()
        for _ in range(passes):
            for f in subset:
                fn(f)
        s = time.perf_counter() - t
        print(f"{ext}: {len(subset)} files, {len(subset) * passes / s:.1f} images/s, "
              f"{pixels * passes / s / 1e6:.1f} MP/s")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
    else:
        bench(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
