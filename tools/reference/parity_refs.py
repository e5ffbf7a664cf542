#!/usr/bin/env python3
"""Reference outputs for imgsim's backbone parity tests.

Builds each backbone in PyTorch (torchvision / timm) with the deterministic
synthetic weights that imgsim's Rust code generates (crates/embed/src/
synthetic.rs: same generator, same tensor names), runs a fixed input, and
writes the small outputs to crates/embed/tests/parity/*.json. Also runs one
fixed PNG through torchvision's transforms (the preprocessing parity case).

Run by hand; CI only reads the committed JSON:

    pip install torch torchvision timm pillow numpy
    python3 tools/reference/parity_refs.py

(From PyPI, torch pulls about 5 GB of CUDA libraries; the CPU is used.)
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
import timm
from PIL import Image
from timm.layers import resample_abs_pos_embed
from torchvision import transforms as T

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "embed", "tests", "parity")
SEED = 0


# The generator: tools/reference/synthetic_weights.py (mirrors
# crates/embed/src/synthetic.rs).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_weights import fnv1a64, range_for, splitmix64, tensor_values, values  # noqa: E402,F401


def fill(model: torch.nn.Module, seed: int, skip=()) -> None:
    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        if name.endswith("num_batches_tracked") or name in skip:
            new[name] = t
            continue
        new[name] = tensor_values(seed, name, tuple(t.shape))
    model.load_state_dict(new)


def fixed_input(seed: int, shape) -> torch.Tensor:
    return torch.from_numpy(values(seed, "input", int(np.prod(shape)), -2.0, 2.0).reshape(shape))


def save(name: str, payload: dict) -> None:
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def case(name: str, model: torch.nn.Module, size: int = 224, batch: int = 2) -> None:
    model.eval()
    x = fixed_input(SEED, (batch, 3, size, size))
    with torch.no_grad():
        y = model(x)
    save(name, {
        "backbone": name,
        "seed": SEED,
        "input": {"name": "input", "shape": list(x.shape), "lo": -2.0, "hi": 2.0},
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.flatten().tolist()],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torchvision": torchvision.__version__,
    })


def resnet(arch: str) -> torch.nn.Module:
    m = getattr(torchvision.models, arch)()
    fill(m, SEED)
    m.fc = torch.nn.Identity()
    return m


def dinov2() -> torch.nn.Module:
    m = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224)
    fill(m, SEED, skip=("pos_embed",))
    # Checkpoints carry the 518-px (37 x 37) position embedding; timm resamples
    # it to the model's grid when loading (bicubic, antialiased).
    pos = tensor_values(SEED, "pos_embed", (1, 1370, 384))
    pos = resample_abs_pos_embed(pos, new_size=(16, 16), num_prefix_tokens=1)
    with torch.no_grad():
        m.pos_embed.copy_(pos)
    return m


def mobilenetv4() -> torch.nn.Module:
    m = timm.create_model("mobilenetv4_conv_small", pretrained=False, num_classes=0)
    fill(m, SEED)
    return m


def clip_b32() -> torch.nn.Module:
    # QuickGELU, as OpenAI trained it (timm's plain variant uses GELU).
    m = timm.create_model("vit_base_patch32_clip_quickgelu_224", pretrained=False)
    fill(m, SEED)
    return m


def pattern_png(path: str) -> None:
    """A deterministic 320 x 240 test picture: gradients, rings and a
    checkerboard, so that the resize filter matters."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    g = 255.0 * xx / (w - 1)
    rings = np.sqrt((xx - 150) ** 2 + (yy - 110) ** 2)
    b = 127.5 + 127.5 * np.cos(rings / 3.0)
    checker = ((xx // 8 + yy // 8) % 2) * 60.0
    img = np.stack([r, g, np.clip(b - checker, 0, 255)], axis=-1)
    Image.fromarray(np.round(img).astype(np.uint8), "RGB").save(path)


def preprocessing_case() -> None:
    path = os.path.join(OUT, "pattern.png")
    pattern_png(path)
    cases = {}
    for interp, mode in (("bilinear", T.InterpolationMode.BILINEAR), ("bicubic", T.InterpolationMode.BICUBIC)):
        tf = T.Compose([
            T.Resize(256, interpolation=mode),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])
        x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
        m = resnet("resnet18").eval()
        with torch.no_grad():
            y = m(x)
        cases[interp] = {
            "tensor_sum_per_channel": [float(v) for v in x[0].sum(dim=(1, 2)).tolist()],
            "tensor_corner": [float(v) for v in x[0, :, :4, :4].flatten().tolist()],
            "output": [float(v) for v in y.flatten().tolist()],
        }
    save("preprocess_resnet18", {
        "image": "pattern.png",
        "backbone": "resnet18",
        "seed": SEED,
        "resize": 256,
        "crop": 224,
        "cases": cases,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    })


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    wanted = set(sys.argv[1:])
    for name, build in (
        ("resnet18", lambda: resnet("resnet18")),
        ("resnet50", lambda: resnet("resnet50")),
        ("mobilenetv4-small", mobilenetv4),
        ("dinov2-small", dinov2),
        ("clip-b32", clip_b32),
    ):
        if not wanted or name in wanted:
            case(name, build())
    if not wanted or "preprocess" in wanted:
        preprocessing_case()


if __name__ == "__main__":
    main()
