#!/usr/bin/env python3
"""PyTorch CPU inference throughput for imgsim's backbones.

The reference side of imgsim's embedding throughput comparison: builds each
backbone in PyTorch (torchvision / timm, same architectures as imgsim's
candle implementations), feeds a random float32 (B, 3, 224, 224) batch and
reports images/s and the median milliseconds per forward pass.

Weights are random (throughput does not depend on their values), so nothing
is downloaded. The Rust side is `imgsim bench embed`, which measures the
candle models the same way on synthetic weights. Run both in the same
session on the same machine, with the same thread count and batch sizes,
and compare the rows side by side:

    python3 tools/bench/torch_throughput.py --threads 2 --json torch.json
    python3 tools/bench/torch_throughput.py --channels-last   # also NHWC rows

Run by hand; nothing in CI calls it.
"""
import argparse
import json
import statistics
import time

import timm
import torch
import torchvision

BACKBONES = ["resnet18", "resnet50", "mobilenetv4-small", "dinov2-small", "clip-b32"]


def build(name):
    """The backbone as a feature extractor (no classifier head), in eval mode."""
    if name in ("resnet18", "resnet50"):
        model = getattr(torchvision.models, name)()
        model.fc = torch.nn.Identity()
    elif name == "mobilenetv4-small":
        model = timm.create_model("mobilenetv4_conv_small", pretrained=False, num_classes=0)
    elif name == "dinov2-small":
        model = timm.create_model(
            "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224
        )
    elif name == "clip-b32":
        # The image tower with its 768 -> 512 projection (QuickGELU, as OpenAI's).
        model = timm.create_model("vit_base_patch32_clip_quickgelu_224", pretrained=False)
    else:
        raise SystemExit(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return model.eval()


def measure(model, batch, seconds, warmup, channels_last):
    """Warm up, then forward until >= `seconds` elapsed and >= 3 iterations."""
    x = torch.rand(batch, 3, 224, 224, dtype=torch.float32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if t1 - start >= seconds and len(times) >= 3:
                break
    elapsed = time.perf_counter() - start
    return {
        "images_per_s": batch * len(times) / elapsed,
        "ms_per_batch_median": statistics.median(times) * 1000.0,
        "iterations": len(times),
    }


def csv_list(text, conv=str):
    return [conv(s.strip()) for s in text.split(",") if s.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default=",".join(BACKBONES),
                   help="comma-separated list (default: all four)")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated (default: 1,32)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default: 2)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="minimum measured time per case (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up iterations (default: 2)")
    p.add_argument("--channels-last", action="store_true",
                   help="also measure in torch.channels_last (separate rows)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args()

    backbones = csv_list(args.backbones)
    for name in backbones:  # fail before spending minutes on the first ones
        if name not in BACKBONES:
            p.error(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    batches = csv_list(args.batch_sizes, int)
    if not batches or min(batches) < 1:
        p.error("--batch-sizes needs positive integers")
    formats = ["contiguous"] + (["channels_last"] if args.channels_last else [])

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"timm {timm.__version__}, threads {torch.get_num_threads()}")
    header = f"{'backbone':<18} {'batch':>5}  {'format':<13} {'images/s':>10} {'ms/batch':>10}"
    print(header)
    print("-" * len(header))

    results = []
    for name in backbones:
        for fmt in formats:
            # Fresh model per format: channels_last converts it in place.
            model = build(name)
            for batch in batches:
                r = measure(model, batch, args.seconds, args.warmup, fmt == "channels_last")
                results.append({"backbone": name, "batch": batch, "format": fmt, **r})
                print(f"{name:<18} {batch:>5}  {fmt:<13} {r['images_per_s']:>10.2f} "
                      f"{r['ms_per_batch_median']:>10.2f}", flush=True)

    if args.json:
        report = {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "threads": torch.get_num_threads(),
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
