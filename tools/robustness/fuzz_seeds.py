"""Writes small, valid seed inputs for the cargo fuzz targets into
fuzz/seeds/<target>/ (run by tools/robustness/fuzz.sh): tiny images of every format
and colour type, IDX / fvecs / npy files, and search requests."""
import io, json, os, struct, sys

root = sys.argv[1] if len(sys.argv) > 1 else "fuzz/seeds"


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


try:
    from PIL import Image
    img = Image.new("RGB", (17, 11))
    for x in range(17):
        for y in range(11):
            img.putpixel((x, y), (x * 15, y * 23, (x * y) % 256))
    for fmt, mode, opts in [("PNG", "RGB", {}), ("PNG", "RGBA", {}), ("PNG", "L", {}), ("PNG", "P", {}),
                            ("PNG", "I;16", {}), ("JPEG", "RGB", {}), ("JPEG", "L", {}),
                            ("JPEG", "CMYK", {}), ("JPEG", "RGB", {"progressive": True}),
                            ("GIF", "P", {}), ("WEBP", "RGB", {"lossless": True}), ("WEBP", "RGB", {}),
                            ("BMP", "RGB", {}), ("TIFF", "RGB", {})]:
        b = io.BytesIO()
        img.convert(mode).save(b, fmt, **opts)
        put("preprocess", f"{fmt.lower()}-{mode.replace(';', '')}-{len(opts)}", b.getvalue())
    b = io.BytesIO()
    frames = [img, img.transpose(Image.FLIP_LEFT_RIGHT)]
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:])
    put("preprocess", "animated.gif", b.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6
    b = io.BytesIO()
    img.save(b, "JPEG", exif=exif.tobytes())
    put("preprocess", "exif-rotated.jpg", b.getvalue())
except ImportError:
    print("Pillow missing: no image seeds (pip install pillow)", file=sys.stderr)

# The decoders target: tiny HEIC, AVIF (8/10-bit, alpha, rotated) and JPEG XL
# files from Debian's encoders (tools/ci/install-deps.sh installs them).
import shutil, subprocess, tempfile, zlib


def png_rgba(w, h):
    raw = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 15 % 256, y * 23 % 256, x * y % 256, 128 + x * 7))
                   for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "in.png")
    with open(src, "wb") as f:
        f.write(png_rgba(17, 11))
    for name, cmd in [("a.heic", ["heif-enc", "-o", "{out}", src]),
                      ("a.avif", ["avifenc", src, "{out}"]),
                      ("ten-bit.avif", ["avifenc", "-d", "10", src, "{out}"]),
                      ("irot.avif", ["avifenc", "--irot", "1", src, "{out}"]),
                      ("a.jxl", ["cjxl", src, "{out}"])]:
        if shutil.which(cmd[0]) is None:
            print(f"{cmd[0]} missing: no {name} seed (tools/ci/install-deps.sh)", file=sys.stderr)
            continue
        out = os.path.join(tmp, name)
        subprocess.run([c.replace("{out}", out) for c in cmd], check=True, capture_output=True)
        with open(out, "rb") as f:
            put("decoders", name, f.read())

# IDX: 3 images of 2x2, and 3 labels.
put("idx", "images", struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 2, 2) + bytes(range(12)))
put("idx", "labels", struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([1, 2, 3]))
# fvecs: 2 vectors of 3.
put("fvecs", "two", b"".join(struct.pack("<i3f", 3, *v) for v in [(1, 2, 3), (4, 5, 6)]))


def npy(descr, shape, data):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (descr, *shape)
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + data


put("npy", "f4", npy("<f4", (2, 2), struct.pack("<4f", 1, 2, 3, 4)))
put("npy", "u1", npy("|u1", (2, 3), bytes(range(6))))
put("npy", "i8", npy("<i8", (1, 2), struct.pack("<2q", -1, 5)))
# search_request: first byte picks the content type (0 JSON, 1 multipart
# boundary XyZ, 3 raw image), then the query string, a newline, the body.
put("search_request", "vector", b"\x00k=5&ef=32\n" + json.dumps({"vector": [0.5, 1, 2], "k": 3}).encode())
put("search_request", "id", b"\x00with_recall=true\n" + json.dumps({"id": 7, "exact": True}).encode())
mp = (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
      b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--XyZ--\r\n")
put("search_request", "multipart", b"\x01k=2\n" + mp)
put("search_request", "raw", b"\x03\n\x89PNG\r\n\x1a\nabc")
print(f"seeds written to {root}")
