"""The deterministic synthetic weights of imgsim's parity tests, in numpy:
every tensor's values are a pure function of (seed, tensor name, shape),
mirroring crates/embed/src/synthetic.rs bit for bit. Shared by
parity_refs.py and clip_text_refs.py."""
import math

import numpy as np
import torch

M64 = (1 << 64) - 1


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001B3) & M64
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def values(seed: int, name: str, n: int, lo: float, hi: float) -> np.ndarray:
    base = np.uint64(fnv1a64(f"{seed}:{name}".encode()))
    with np.errstate(over="ignore"):
        x = base + np.arange(n, dtype=np.uint64)
        u = (splitmix64(x) >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (lo + (hi - lo) * u).astype(np.float32)


def range_for(name: str, shape) -> tuple:
    if name.endswith("running_var"):
        return 0.5, 1.5
    if name.endswith("running_mean") or name.endswith("bias"):
        return -0.2, 0.2
    if len(shape) == 1:
        return 0.5, 1.5
    if name.endswith("weight"):
        fan_in = max(1, int(np.prod(shape[1:])))
        a = math.sqrt(3.0 / fan_in)
        return -a, a
    return -0.5, 0.5


def tensor_values(seed: int, name: str, shape) -> torch.Tensor:
    lo, hi = range_for(name, shape)
    n = int(np.prod(shape))
    return torch.from_numpy(values(seed, name, n, lo, hi).reshape(shape))
