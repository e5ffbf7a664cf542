"""Tests of imgsim.ray's parts that need no Ray cluster: the shard hash and global ids, file listing and sniffing, shard creation, the writer, the sharded service's merge, recall and request parsing."""

import pathlib

import numpy as np
import pytest

import imgsim
from imgsim.ray.index import ShardWriter, open_shards
from imgsim.ray.serve import ApiError, merge, recall_at_k, search_from_json
from imgsim.ray.shards import (
    SHARD_ID_BITS,
    EmbedderSpec,
    global_id,
    list_inputs,
    shard_name,
    shard_of,
    sniff,
    split_global_id,
)


def test_shard_of_is_pinned():
    # Existing sharded collections depend on these values: a change of the
    # hash would put re-indexed files into other shards.
    assert shard_of("/photos/a.jpg", 4) == 1
    assert shard_of("/photos/b.jpg", 4) == 2
    assert shard_of("/tmp/imgsim-photo-crops/photo-0000.jpg", 1000) == 615
    assert shard_of("/x/é.png", 1000) == 599
    with pytest.raises(ValueError):
        shard_of("/a", 0)


def test_shard_of_spreads():
    counts = np.bincount([shard_of(f"/p/{i}.jpg", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150, counts


def test_global_ids_round_trip():
    assert shard_name(3) == "shard-03"
    for shard, local in [(0, 0), (3, 17), (8191, (1 << SHARD_ID_BITS) - 1)]:
        assert split_global_id(global_id(shard, local)) == (shard, local)
    assert global_id(1, 5) == (1 << 40) + 5
    with pytest.raises(ValueError):
        global_id(0, 1 << SHARD_ID_BITS)


def test_sniff_names_what_imgsim_records():
    assert sniff(b"\xff\xd8\xff\xe0....") == "jpeg"
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff(b"GIF89a") == "gif"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"\x00\x00\x00\x1cftypheic") == "heif"
    assert sniff(b"\x00\x00\x00\x1cftypavif") == "avif"
    assert sniff(b"not an image") is None
    assert sniff(b"") is None


def test_list_inputs(tmp_path: pathlib.Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "b.jpg").write_bytes(b"2")
    (tmp_path / ".hidden.jpg").write_bytes(b"3")
    (tmp_path / ".dir").mkdir()
    (tmp_path / ".dir" / "y.jpg").write_bytes(b"4")
    files, problems = list_inputs([str(tmp_path), str(tmp_path / "nope")])
    assert [f.path for f in files] == [str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b.jpg")]
    assert problems == [(str(tmp_path / "nope"), "no such file or folder")]
    files, _ = list_inputs([str(tmp_path / "**" / "*.jpg")], exclude=["x.jpg"])
    assert [f.path for f in files] == [str(tmp_path / "b.jpg")]


def test_merge_of_shards_is_the_exact_top_k_of_the_union(tmp_path: pathlib.Path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(600, 16)).astype(np.float32)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    union = imgsim.Collection.create(tmp_path / "u", dim=16, metric="l2")
    union.add(data, external_ids=[f"v{i}" for i in range(len(data))])
    shards = []
    for s in range(3):
        c = imgsim.Collection.create(tmp_path / f"s{s}", dim=16, metric="l2")
        rows = np.arange(s, len(data), 3)
        c.add(data[rows], external_ids=[f"v{i}" for i in rows])
        shards.append(c)
    want_ids, want_d = union.search(queries, k=10, exact=True)
    for q in range(len(queries)):
        rows = []
        for s, c in enumerate(shards):
            ids, d = c.search(queries[q], k=10, exact=True)
            rows.append({"ids": [global_id(s, int(i)) for i in ids[0]], "dist": d[0].tolist(),
                         "paths": [c.item(int(i))["external_id"] for i in ids[0]]})
        got = merge(rows, 10)
        assert [h[2] for h in got] == [union.item(int(i))["external_id"] for i in want_ids[q]]
        assert [h[0] for h in got] == want_d[q].tolist()
        assert recall_at_k(got, got, 10) == 1.0
        assert recall_at_k(got[:5] + got[6:] + [(99.0, 0, "far")], got, 10) == 0.9


def test_search_json_is_checked_as_imgsim_serve_checks_it():
    s = search_from_json({"vector": [0.0, 1.0], "k": 3}, {"ef": "20", "exact": "true"}, 2)
    assert (s.k, s.ef, s.exact, s.vector.tolist()) == (3, 20, True, [0.0, 1.0])
    for body, words in [
        ({"vector": [1.0]}, "1 values"),
        ({"vector": [1.0, float("nan")]}, "non-finite"),
        ({"id": 1, "k": 0}, "k must be between 1 and 1000"),
        ({"id": 1, "ef": 100001}, "ef must be between"),
        ({"id": 1, "label": "beach"}, "label filters"),
        ({"id": 1, "bogus": 1}, "unknown field `bogus`"),
        ({}, "give one of"),
    ]:
        with pytest.raises(ApiError, match=words) as e:
            search_from_json(body, {}, 2)
        assert e.value.status == 400


def test_shards_are_created_for_the_embedder_and_refuse_another(tmp_path: pathlib.Path):
    spec = EmbedderSpec(backbone="mobilenetv4-small", weights="synthetic:1")
    colls = open_shards(tmp_path, 3, spec)
    try:
        assert [c.path.name for c in colls] == ["shard-00", "shard-01", "shard-02"]
        assert all(c.embedder().identity == colls[0].embedder().identity for c in colls)
    finally:
        for c in colls:
            c.close()
    with pytest.raises(ValueError, match="holds 3 shards"):
        open_shards(tmp_path, 2, spec)
    with pytest.raises(imgsim.ConflictError, match="resnet18"):
        open_shards(tmp_path, 3, EmbedderSpec(backbone="resnet18", weights="synthetic:1"))


def test_a_vector_the_shard_refuses_fails_its_file_alone(tmp_path: pathlib.Path):
    coll = imgsim.Collection.create(tmp_path / "s", dim=4)
    try:
        writer = ShardWriter([coll], [{}], commit_size=10)
        meta = {"size": 1, "mtime_ns": 1, "blake3": "x", "format": "jpeg"}
        writer.add("/a.jpg", np.array([1, 0, 0, 0], np.float32), meta)
        writer.add("/zero.jpg", np.zeros(4, np.float32), meta)
        writer.add("/nan.jpg", np.array([1, np.nan, 0, 0], np.float32), meta)
        writer.add("/b.jpg", np.array([0, 2, 0, 0], np.float32), meta)
        writer.flush()
        assert writer.indexed == 2
        assert [f["path"] for f in writer.failures] == ["/zero.jpg", "/nan.jpg"]
        assert all(f["error"].startswith("unusable embedding: ") for f in writer.failures)
        assert sorted(coll.item(int(i))["external_id"] for i in coll.ids()) == ["/a.jpg", "/b.jpg"]
    finally:
        coll.close()
