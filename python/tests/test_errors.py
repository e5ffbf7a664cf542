"""Failures raise imgsim's exceptions, classed by kind, with the library's
message (the one the CLI prints)."""

import subprocess

import numpy as np
import pytest

import imgsim


@pytest.fixture
def coll(tmp_path, rng):
    c = imgsim.Collection.create(tmp_path / "c", dim=8, metric="cosine")
    c.add(rng.standard_normal((20, 8)).astype(np.float32))
    return c


def test_wrong_dimension(coll):
    for call in (
        lambda: coll.search(np.ones((2, 3), np.float32)),
        lambda: coll.search(np.ones((2, 3), np.float32), exact=True),
        lambda: coll.add(np.ones((2, 3), np.float32)),
        lambda: coll.recall(np.ones((1, 3), np.float32)),
    ):
        with pytest.raises(imgsim.InvalidError) as e:
            call()
        assert str(e.value) == "vector 0 has dimension 3, expected 8"
        assert isinstance(e.value, ValueError) and isinstance(e.value, imgsim.Error)
    assert len(coll) == 20


def test_nan_zero_and_k_name_the_row(coll):
    q = np.ones((4, 8), np.float32)
    q[2, 5] = np.nan
    msg = "vector 2 has a non-finite component at position 5 (NaN)"
    for exact in (False, True):
        with pytest.raises(imgsim.InvalidError) as e:
            coll.search(q, k=3, exact=exact)
        assert str(e.value) == msg
    # All or nothing: the good rows before the bad one are not added.
    with pytest.raises(imgsim.InvalidError) as e:
        coll.add(q)
    assert str(e.value) == msg
    assert len(coll) == 20
    q[2, 5] = np.inf
    with pytest.raises(imgsim.InvalidError, match=r"position 5 \(inf\)"):
        coll.add(q)
    z = np.ones((3, 8), np.float32)
    z[1] = 0
    with pytest.raises(imgsim.InvalidError) as e:
        coll.search(z)
    assert str(e.value) == "vector 1 is all zeros and cannot be used with the cosine metric"
    for k in (0, 1001):
        with pytest.raises(imgsim.InvalidError) as e:
            coll.search(np.ones((1, 8), np.float32), k=k)
        assert str(e.value) == f"k must be between 1 and 1000, not {k}"
    for ef in (0, 100001):
        with pytest.raises(imgsim.InvalidError) as e:
            coll.recall(np.ones((1, 8), np.float32), ef=ef)
        assert str(e.value) == f"ef must be between 1 and 100000, not {ef}"
    with pytest.raises(imgsim.InvalidError, match="2-D array"):
        coll.search(np.ones((1, 1, 8), np.float32))
    with pytest.raises(imgsim.InvalidError, match="3 external ids given for 2 vectors"):
        coll.add(np.ones((2, 8), np.float32), external_ids=["a", "b", "c"])
    with pytest.raises(imgsim.InvalidError, match="metadata 1 must be a dict or None"):
        coll.add(np.ones((2, 8), np.float32), metadata=[{}, 3])
    assert len(coll) == 20


def test_missing_existing_and_bad_parameters(tmp_path, coll):
    missing = tmp_path / "nowhere"
    with pytest.raises(imgsim.NotFoundError) as e:
        imgsim.Collection.open(missing)
    assert str(e.value) == f"no collection at {missing}"
    assert isinstance(e.value, LookupError)
    with pytest.raises(imgsim.ConflictError) as e:
        imgsim.Collection.create(tmp_path / "c", dim=8)
    assert str(e.value) == f"a collection already exists at {tmp_path / 'c'}"
    with pytest.raises(imgsim.InvalidError, match=r"^invalid parameter m: "):
        imgsim.Collection.create(tmp_path / "d", dim=8, m=1)
    with pytest.raises(imgsim.InvalidError) as e:
        imgsim.Collection.create(tmp_path / "d", dim=8, metric="hamming")
    assert str(e.value) == 'invalid parameter metric: unknown metric "hamming" (use l2 or cosine)'
    with pytest.raises(imgsim.InvalidError) as e:
        imgsim.Collection.create(tmp_path / "d", dim=8, seal_threshold=0)
    assert str(e.value) == "invalid parameter seal_threshold: must be at least 1, not 0"
    with pytest.raises(imgsim.InvalidError, match="must be at least 1, not 0"):
        imgsim.Collection.create(tmp_path / "d", dim=0)
    with pytest.raises(imgsim.InvalidError, match="quantization"):
        imgsim.Collection.create(tmp_path / "d", dim=8, quantization="pq")


def test_a_collection_open_elsewhere_is_locked_with_the_cli_message(tmp_path, coll, imgsim_bin):
    data = tmp_path
    out = subprocess.run(
        [imgsim_bin, "query", "--id", "1", "--quiet", "--data-dir", str(data), "-c", "c"],
        capture_output=True, text=True,
    )
    assert out.returncode == 1, out.stderr
    cli_message = out.stderr.strip().splitlines()[-1]
    assert cli_message.startswith("error: ")
    with pytest.raises(imgsim.LockedError) as e:
        imgsim.Collection.open(tmp_path / "c")
    assert str(e.value) == cli_message[len("error: "):]
    assert "is locked by another process" in str(e.value)


def test_embedder_errors(tmp_path, photos):
    with pytest.raises(imgsim.InvalidError, match="vgg16"):
        imgsim.Embedder("vgg16", weights="synthetic:1")
    with pytest.raises(imgsim.Error, match="nope.safetensors"):
        imgsim.Embedder("resnet18", weights=str(tmp_path / "nope.safetensors"))
    with pytest.raises(imgsim.Error, match="nowhere"):
        imgsim.Embedder.autoencoder(tmp_path / "nowhere")
    e = imgsim.Embedder("resnet18", weights="synthetic:1")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(imgsim.Error) as err:
        e.embed_files([bad])
    assert str(bad) in str(err.value)
    with pytest.raises(imgsim.NotFoundError, match="missing.png"):
        e.embed_files([tmp_path / "missing.png"])
    with pytest.raises(imgsim.Error, match=r"bytes\[1\]"):
        e.embed_bytes([open(photos[0], "rb").read(), b"GIF89a junk", b""])
    with pytest.raises(imgsim.InvalidError, match="batch_size must be at least 1"):
        e.embed_bytes([b"x"], batch_size=0)
    with pytest.raises(imgsim.Error, match="text"):
        e.embed_texts(["a dog"])


def test_a_bad_image_fails_with_the_cli_message(tmp_path, imgsim_bin, photos):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n")
    e = imgsim.Embedder("resnet18", weights="synthetic:1")
    for path in (bad, empty, text):
        out = subprocess.run(
            [imgsim_bin, "embed", str(path), "--backbone", "resnet18", "--weights", "synthetic:1"],
            capture_output=True, text=True,
        )
        assert out.returncode == 1, out.stderr
        cli = [line[len("error: "):] for line in out.stderr.splitlines()
               if line.startswith("error: ") and str(path) in line]
        assert len(cli) == 1, out.stderr
        with pytest.raises(imgsim.Error) as err:
            e.embed_files([photos[0], path])
        assert str(err.value) == cli[0]
        assert isinstance(err.value, ValueError), type(err.value)
