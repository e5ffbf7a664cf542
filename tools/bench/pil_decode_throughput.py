#!/usr/bin/env python3
"""PIL's decode + preprocess rate on the same photos as imgsim's
`cargo run --release -p imgsim-embed --example decode_throughput`, one
thread: open, (optionally) draft mode -- Pillow's DCT-scaled JPEG decoding --
then torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize.

    python3 tools/bench/pil_decode_throughput.py [DIR] [PASSES]
"""
import glob
import os
import sys
import time

import torch
from PIL import Image
from torchvision import transforms as T

torch.set_num_threads(1)
root = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/backgrounds"
passes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
tf = T.Compose([
    T.Resize(256),
    T.CenterCrop(224),
    T.ToTensor(),
    T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
files = sorted(f for f in glob.glob(os.path.join(root, "**", "*"), recursive=True) if os.path.isfile(f))
for ext in ("jpg", "png", "webp"):
    subset = [f for f in files if f.lower().endswith("." + ext)]
    if not subset:
        continue
    rates = []
    for label, draft in (("full decode", False), ("draft decode", True)):
        if draft and ext != "jpg":
            continue
        best = float("inf")
        for _ in range(passes):
            start = time.perf_counter()
            for f in subset:
                im = Image.open(f)
                if draft:
                    im.draft("RGB", (256, 256))
                tf(im.convert("RGB"))
            best = min(best, time.perf_counter() - start)
        rates.append(f"{label} {len(subset) / best:.1f} images/s")
    print(f"{ext}: {len(subset)} files, 1 thread, best of {passes}: " + ", ".join(rates))
