#!/usr/bin/env python3
"""PyTorch CPU throughput of CLIP ViT-B/32's text tower (the baseline for
imgsim's Rust text encoder), on the synthetic weights of
tools/reference/clip_text_refs.py (the values do not change the speed).

Measures texts/s at batch 1 and batch 32 for:
  open_clip  encode_text on ids padded to 77 (what open_clip always does)
  hf         CLIPModel.get_text_features on ids padded to the longest text in
             the batch, with an attention mask (transformers' padding="longest")

Run by hand (same venv as clip_text_refs.py):

    /work/venv-clip/bin/python tools/bench/clip_text_torch.py [--threads 2] [--seconds 5] [--json OUT]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import clip_text_refs as refs  # noqa: E402

LABELS = [
    "dog", "cat", "car", "bicycle", "airplane", "bird", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "boat", "train", "bus", "truck", "traffic light", "fire hydrant",
    "stop sign", "bench", "umbrella", "backpack", "suitcase", "kite", "skateboard", "surfboard",
    "tennis racket", "wine glass", "pizza", "laptop", "teddy bear",
]
CAPTIONS = [
    "a man riding a red bicycle down a busy city street next to a yellow taxi",
    "two young children building a sandcastle on a sunny beach while waves roll in",
    "a bowl of ramen with a soft-boiled egg, green onions and slices of pork on a wooden table",
    "an old stone lighthouse on a rocky cliff at sunset with seagulls flying overhead",
]


def prompts(batch: int) -> list:
    texts = [f"a photo of a {label}." for label in LABELS] + CAPTIONS
    out = []
    i = 0
    while len(out) < batch:
        out.append(texts[i % len(texts)])
        i += 7  # mix short prompts and captions in each batch
    return out


def measure(fn, seconds: float, min_iters: int = 3) -> list:
    """Per-call wall times (s) after two warm-up calls, for at least `seconds`
    in all and at least `min_iters` calls."""
    fn()  # warm-up
    fn()
    times, t0 = [], time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - t0 >= seconds and len(times) >= min_iters:
            return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import open_clip

    hf, _ = refs.hf_model(attn="sdpa", text_only_fill=True)  # transformers' default attention
    oc = refs.open_clip_model(hf.state_dict())
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        texts = prompts(batch)
        ids77 = open_clip.tokenize(texts)  # [batch, 77], zero padded
        lens = (ids77 != 0).sum(-1)
        longest = int(lens.max())
        ids = ids77[:, :longest].clone()
        mask = (torch.arange(longest)[None, :] < lens[:, None]).long()
        ids[mask == 0] = 49407  # pad id of HF's CLIP tokenizer; masked anyway

        def run_oc():
            with torch.inference_mode():
                oc.encode_text(ids77)

        def run_hf():
            with torch.inference_mode():
                hf.get_text_features(input_ids=ids, attention_mask=mask)

        for name, fn, seq in (("open_clip encode_text (pad 77)", run_oc, 77),
                              ("hf get_text_features (pad longest)", run_hf, longest)):
            times = sorted(measure(fn, args.seconds))
            med = times[len(times) // 2]
            results.append({
                "impl": name, "batch": batch, "seq_len": seq, "iters": len(times),
                "seconds": sum(times), "texts_per_s": batch / med,
                "texts_per_s_mean": len(times) * batch / sum(times),
                "ms_per_batch": 1000 * med, "ms_per_batch_min": 1000 * times[0],
            })
            r = results[-1]
            print(f"{name:36s} batch {batch:3d} seq {seq:2d}: {r['texts_per_s']:8.1f} texts/s "
                  f"(median {r['ms_per_batch']:.1f} ms/batch, min {r['ms_per_batch_min']:.1f}, "
                  f"{len(times)} iters)", flush=True)

    print()
    print(f"threads {args.threads}, torch {torch.__version__}; texts/s from the median call")
    print("| impl | batch | seq | texts/s | median ms/batch | min ms/batch | iters |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['impl']} | {r['batch']} | {r['seq_len']} | {r['texts_per_s']:.1f} "
              f"| {r['ms_per_batch']:.1f} | {r['ms_per_batch_min']:.1f} | {r['iters']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "torch": torch.__version__,
                       "open_clip": open_clip.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
