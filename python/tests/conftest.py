"""Shared fixtures of the Python tests: the imgsim binary (for parity with
the CLI), real photos, seeded vectors and a numpy brute force."""

import os
import pathlib
import shutil

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PHOTOS = pathlib.Path("/usr/share/backgrounds/gnome")


@pytest.fixture(scope="session")
def imgsim_bin() -> str:
    """The imgsim CLI built from this tree: $IMGSIM_BIN (tools/python/test.sh
    sets it), else target/{debug,release}/imgsim under $CARGO_TARGET_DIR or
    the repository."""
    explicit = os.environ.get("IMGSIM_BIN")
    if explicit:
        return explicit
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        candidate = target / profile / "imgsim"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("imgsim")
    if found:
        return found
    pytest.fail("no imgsim binary: build it (cargo build) or set IMGSIM_BIN")


@pytest.fixture(scope="session")
def photos() -> list:
    """Real photos: the desktop backgrounds of Debian's gnome-backgrounds
    (WebP, 4 to 18 megapixels)."""
    found = sorted(str(p) for p in PHOTOS.glob("*.webp"))
    if len(found) < 4:
        pytest.fail(
            f"no photos in {PHOTOS}: install gnome-backgrounds "
            "(bash tools/ci/install-deps.sh --photos)"
        )
    return found[:6]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(17)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int, metric: str):
    """Exact k-NN in numpy (float64): ids and the metric's distances
    (Euclidean, or 1 - cos)."""
    b = base.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "l2":
        d = np.sqrt(np.maximum(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))
    else:
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1.0 - qn @ bn.T
    ids = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(d, ids, axis=1)
