"""Helpers the tools/ray check scripts share: the photo set they index, running commands, checking shards against imgsim index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

import imgsim
from imgsim.ray.shards import shard_dirs, shard_of

#: The photos: 400 camera-sized JPEG crops, made by
#: `cargo run --release -p imgsim-pipeline --example photo_folder -- /usr/share/backgrounds DIR 400`.
DEFAULT_PHOTOS = "/tmp/imgsim-photo-crops"
#: The embedder of the checks: small, deterministic, no download.
EMBEDDER = ["--backbone", "mobilenetv4-small", "--weights", "synthetic:1"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def imgsim_bin() -> str:
    b = os.environ.get("IMGSIM_BIN", "")
    if not b or not os.access(b, os.X_OK):
        sys.exit("set IMGSIM_BIN to the imgsim command (a release build)")
    return b


def make_inputs(photos: str, count: int, work: Path) -> Tuple[Path, List[str], str]:
    """A folder of ``count`` photos copied from ``photos`` (times kept), one
    damaged JPEG and one text file: the folder, the paths that must end up
    indexed, and the damaged file's path."""
    src = sorted(p for p in Path(photos).glob("*.jpg"))
    if len(src) < count:
        sys.exit(f"{photos} holds {len(src)} JPEGs, not {count}: make them with the photo_folder example")
    folder = work / "photos"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    good = []
    for p in src[:count]:
        dst = folder / p.name
        shutil.copy2(p, dst)
        good.append(str(dst.resolve()))
    damaged = folder / "damaged.jpg"
    damaged.write_bytes(src[0].read_bytes()[:2000])
    (folder / "notes.txt").write_text("not an image\n")
    return folder, sorted(good), str(damaged.resolve())


def run(cmd: Sequence[str], ok: Sequence[int] = (0,), env: Optional[Dict[str, str]] = None) -> Tuple[float, str]:
    """Runs ``cmd``; its wall seconds and stdout. Fails on another exit status."""
    t = time.perf_counter()
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode not in ok:
        sys.stderr.write(p.stderr[-5000:])
        sys.exit(f"`{' '.join(cmd)}` exited with {p.returncode}")
    return wall, p.stdout


def imgsim_index(folder: Path, data_dir: Path) -> Tuple[float, Dict[str, object]]:
    """``imgsim index`` of ``folder`` into collection ``ref`` of ``data_dir``:
    wall seconds and its JSON summary (exit 3: some files failed)."""
    wall, out = run(
        [imgsim_bin(), "index", str(folder), "--data-dir", str(data_dir), "--collection", "ref", "--json", "-q"]
        + EMBEDDER,
        ok=(0, 3),
    )
    return wall, json.loads(out)


def last_json(stdout: str) -> Dict[str, object]:
    """The JSON summary a job printed last (Ray's forwarded worker logs may
    come before it on stdout)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    if not starts:
        raise ValueError(f"no JSON summary in the output: {stdout[-2000:]!r}")
    parsed: Dict[str, object] = json.loads("\n".join(lines[starts[-1]:]))
    return parsed


def ray_index(folder: Path, out: Path, shards: int, extra: Sequence[str] = ()) -> Tuple[float, Dict[str, object]]:
    """``python -m imgsim.ray index`` of ``folder`` into ``out``: wall seconds
    and its JSON summary."""
    wall, stdout = run(
        [sys.executable, "-m", "imgsim.ray", "index", "--input", str(folder), "--collections", str(out),
         "--shards", str(shards), "--json", *EMBEDDER, *extra],
        ok=(0, 3),
    )
    return wall, last_json(stdout)


def vectors_by_path(c: imgsim.Collection) -> Dict[str, npt.NDArray[np.float32]]:
    return {str(c.item(int(i))["external_id"]): c.vector(int(i)) for i in c.ids()}


def check_shards(out: Path, ref_dir: Path, expected: Sequence[str]) -> Dict[str, int]:
    """Checks the shards of ``out`` against collection ``ref``: every
    expected path in exactly one shard (the one it hashes to), once, and
    its vector bit for bit the one ``imgsim index`` stored. Exits on a
    mismatch; returns the counts per shard."""
    with imgsim.Collection.open(ref_dir / "ref") as ref:
        want = vectors_by_path(ref)
    dirs = shard_dirs(out)
    seen: Dict[str, int] = {}
    counts: Dict[str, int] = {}
    problems: List[str] = []
    for i, d in enumerate(dirs):
        with imgsim.Collection.open(d) as c:
            counts[d.name] = len(c)
            for raw in c.ids():
                item = c.item(int(raw))
                path = str(item["external_id"])
                if path in seen:
                    problems.append(f"{path} is in {dirs[seen[path]].name} and in {d.name}")
                seen[path] = i
                if shard_of(path, len(dirs)) != i:
                    problems.append(f"{path} is in {d.name}, but hashes to shard {shard_of(path, len(dirs))}")
                v = c.vector(int(raw))
                w = want.get(path)
                if w is None:
                    problems.append(f"{path} is in {d.name} but not in imgsim index's collection")
                elif v.view(np.uint32).tobytes() != w.view(np.uint32).tobytes():
                    problems.append(f"{path}: vector differs from imgsim index's (max |diff| {np.abs(v - w).max():.3g})")
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    if missing:
        problems.append(f"{len(missing)} images in no shard, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected items, e.g. {extra[:3]}")
    if set(want) != set(expected):
        problems.append(f"imgsim index holds {len(want)} images, expected {len(expected)}")
    if problems:
        for p in problems[:20]:
            log(f"MISMATCH {p}")
        sys.exit(f"{len(problems)} problems in {out}")
    log(f"OK: {len(seen)} images, each in exactly one shard (its hash's), once; "
        f"all {len(seen)} vectors bit-identical to imgsim index's; per shard {counts}")
    return counts
