"""Embedder from Python: the vectors of `imgsim embed`, bit for bit, on
real photos, from files and from bytes, in any batch size."""

import json
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import imgsim

WEIGHTS = "synthetic:1"


def linked_folder(tmp_path, photos):
    """A folder of links to the photos."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in photos:
        (folder / pathlib.Path(p).name).symlink_to(p)
    return folder


def cli_vectors(imgsim_bin, args):
    out = subprocess.run(
        [imgsim_bin, "embed", *args, "--json"], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    head = json.loads(lines[0])["embedder"]
    rows = [json.loads(line) for line in lines[1:]]
    return head, rows


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv4-small"])
def test_backbone_vectors_equal_the_cli_bit_for_bit(imgsim_bin, photos, backbone):
    head, rows = cli_vectors(imgsim_bin, [*photos, "--backbone", backbone, "--weights", WEIGHTS])
    cli = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert [r["path"] for r in rows] == photos
    e = imgsim.Embedder(backbone, weights=WEIGHTS)
    assert e.identity == head
    assert (e.dim, e.metric, e.name) == (head["dim"], "cosine", backbone)
    v = e.embed_files(photos, batch_size=4)
    assert v.dtype == np.float32 and v.shape == (len(photos), e.dim)
    assert v.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(v, cli)
    np.testing.assert_array_equal(e.embed_files(photos, batch_size=1), cli)
    blobs = [open(p, "rb").read() for p in photos]
    np.testing.assert_array_equal(e.embed_bytes(blobs), cli)
    # Unit vectors, different for different photos.
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert len({row.tobytes() for row in v}) == len(photos)


def test_other_weights_give_other_vectors(photos):
    a = imgsim.Embedder("resnet18", weights="synthetic:1").embed_files(photos[:2])
    b = imgsim.Embedder("resnet18", weights="synthetic:2").embed_files(photos[:2])
    assert not np.array_equal(a, b)


def test_empty_input_gives_an_empty_matrix():
    e = imgsim.Embedder("resnet18", weights=WEIGHTS)
    assert e.embed_files([]).shape == (0, 512)
    assert e.embed_bytes([]).shape == (0, 512)
    assert "resnet18" in imgsim.Embedder.backbones()


def test_photos_found_by_their_own_vectors(tmp_path, photos):
    e = imgsim.Embedder("resnet18", weights=WEIGHTS)
    v = e.embed_files(photos)
    c = imgsim.Collection.create(tmp_path / "photos", dim=e.dim, metric=e.metric)
    ids = c.add(v, external_ids=photos)
    found, dist = c.search(e.embed_files(photos[::-1]), k=1)
    np.testing.assert_array_equal(found[:, 0], ids[::-1])
    np.testing.assert_allclose(dist[:, 0], 0.0, atol=1e-6)
    assert c.item(int(found[0, 0]))["external_id"] == photos[-1]


@pytest.mark.parametrize("objective", ["reconstruction", "contrastive"])
def test_trained_checkpoint_vectors_equal_the_cli_bit_for_bit(
    tmp_path, imgsim_bin, photos, objective
):
    # A checkpoint made here by `imgsim train autoencoder` on the photos.
    folder = linked_folder(tmp_path, photos)
    ckpt = tmp_path / objective
    subprocess.run(
        [imgsim_bin, "train", "autoencoder", "--images", str(folder), "--image-size", "32",
         "--epochs", "1", "--dim", "16", "--seed", "1", "--objective", objective,
         "--out", str(ckpt), "--quiet"],
        capture_output=True, text=True, check=True,
    )
    head, rows = cli_vectors(imgsim_bin, [*photos, "--autoencoder", str(ckpt)])
    cli = np.array([r["embedding"] for r in rows], dtype=np.float32)
    for path in (ckpt, ckpt / "model.safetensors"):
        e = imgsim.Embedder.autoencoder(path)
        assert e.identity == head
        v = e.embed_files(photos, batch_size=3)
        np.testing.assert_array_equal(v, cli)
    assert v.shape == (len(photos), head["dim"])


def test_a_cli_indexed_collection_is_queried_as_imgsim_query_does(tmp_path, imgsim_bin, photos):
    folder = linked_folder(tmp_path, photos)
    data = tmp_path / "data"
    subprocess.run(
        [imgsim_bin, "index", str(folder), "--backbone", "mobilenetv4-small",
         "--weights", WEIGHTS, "--data-dir", str(data), "-c", "photos", "--quiet"],
        capture_output=True, text=True, check=True,
    )
    query = str(folder / pathlib.Path(photos[2]).name)
    out = subprocess.run(
        [imgsim_bin, "query", query, "-k", "4", "--json", "--quiet",
         "--data-dir", str(data), "-c", "photos"],
        capture_output=True, text=True, check=True,
    )
    answer = json.loads(out.stdout)
    with imgsim.Collection.open(data / "photos") as c:
        e = c.embedder()
        assert (e.name, e.dim, len(c)) == ("mobilenetv4-small", 1280, len(photos))
        ids, dist = c.search(e.embed_files([query]), k=4)
        assert [r["id"] for r in answer["results"]] == ids[0].tolist()
        # Cosine collections show similarity: 1 - distance.
        np.testing.assert_allclose(
            [r["score"] for r in answer["results"]], 1.0 - dist[0], atol=1e-6
        )
        assert c.item(int(ids[0, 0]))["external_id"] == query


def index_with_cli(imgsim_bin, folder, data, name, *extra):
    subprocess.run(
        [imgsim_bin, "index", str(folder), "--data-dir", str(data), "-c", name, "--quiet", *extra],
        capture_output=True, text=True, check=True,
    )


def test_vectors_added_from_python_are_those_imgsim_index_stores(tmp_path, imgsim_bin, photos):
    folder = linked_folder(tmp_path, photos)
    data = tmp_path / "data"
    index_with_cli(imgsim_bin, folder, data, "cli", "--backbone", "mobilenetv4-small", "--weights", WEIGHTS)
    e = imgsim.Embedder("mobilenetv4-small", WEIGHTS)
    paths = sorted(str(p) for p in folder.iterdir())
    with imgsim.Collection.create(data / "py", embedder=e) as py, imgsim.Collection.open(data / "cli") as cli:
        ids = py.add(e.embed_files(paths), external_ids=paths)
        stored = {cli.item(int(i))["external_id"]: cli.vector(int(i)) for i in cli.ids()}
        assert sorted(stored) == paths
        for i, p in zip(ids, paths):
            np.testing.assert_array_equal(py.vector(int(i)), stored[p])


def test_a_collection_created_for_an_embedder_works_with_the_cli(tmp_path, imgsim_bin, photos):
    data = tmp_path / "data"
    e = imgsim.Embedder("mobilenetv4-small", WEIGHTS, exact_decode=True)
    assert e.exact_decode
    with pytest.raises(imgsim.InvalidError, match="1280-d vectors compared by cosine"):
        imgsim.Collection.create(data / "bad", dim=64, embedder=e)
    with imgsim.Collection.create(data / "photos", embedder=e) as c:
        assert (c.dim, c.metric, len(c)) == (1280, "cosine", 0)
        again = c.embedder()
        assert again.identity == e.identity and again.exact_decode
    with pytest.raises(imgsim.ConflictError, match="already exists"):
        imgsim.Collection.create(data / "photos", embedder=e)
    folder = linked_folder(tmp_path, photos)
    # imgsim index takes the recorded embedder (no --backbone), and refuses another.
    index_with_cli(imgsim_bin, folder, data, "photos")
    refused = subprocess.run(
        [imgsim_bin, "index", str(folder), "--data-dir", str(data), "-c", "photos", "--quiet",
         "--backbone", "resnet18", "--weights", WEIGHTS],
        capture_output=True, text=True,
    )
    assert refused.returncode != 0 and "mobilenetv4-small" in refused.stderr
    query = str(folder / pathlib.Path(photos[1]).name)
    out = subprocess.run(
        [imgsim_bin, "query", query, "-k", "1", "--json", "--quiet", "--data-dir", str(data), "-c", "photos"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["results"][0]["path"] == query


def test_a_collection_made_for_an_autoencoder_keeps_its_own_copy(tmp_path, imgsim_bin, photos):
    folder = linked_folder(tmp_path, photos)
    ckpt = tmp_path / "ae"
    subprocess.run(
        [imgsim_bin, "train", "autoencoder", "--images", str(folder), "--image-size", "32",
         "--epochs", "1", "--dim", "16", "--seed", "1", "--out", str(ckpt), "--quiet"],
        capture_output=True, text=True, check=True,
    )
    e = imgsim.Embedder.autoencoder(ckpt)
    with imgsim.Collection.create(tmp_path / "c", embedder=e) as c:
        assert (c.path / "autoencoder").is_dir()
    shutil.rmtree(ckpt)
    with imgsim.Collection.open(tmp_path / "c") as c:
        np.testing.assert_array_equal(c.embedder().embed_files(photos[:2]), e.embed_files(photos[:2]))


def test_a_vector_collection_has_no_embedder(tmp_path):
    c = imgsim.Collection.create(tmp_path / "v", dim=4)
    with pytest.raises(imgsim.Error, match="records no image embedder"):
        c.embedder()
