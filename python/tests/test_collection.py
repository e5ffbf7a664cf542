"""Collection from Python: search against a numpy brute force, padding,
delete, compact, len, reopening, metadata, and a collection shared with
the CLI."""

import json
import subprocess

import numpy as np
import pytest

import imgsim
from conftest import brute_force


def make(tmp_path, rng, n=3000, dim=24, metric="l2", seal_threshold=512):
    """A collection of `n` seeded vectors added in batches of 250: sealed
    HNSW segments plus an appendable one."""
    c = imgsim.Collection.create(
        tmp_path / "c", dim=dim, metric=metric, seal_threshold=seal_threshold
    )
    base = rng.standard_normal((n, dim)).astype(np.float32)
    ids = np.concatenate([c.add(base[i : i + 250]) for i in range(0, n, 250)])
    return c, base, ids


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_search_equals_numpy_brute_force(tmp_path, rng, metric):
    c, base, ids = make(tmp_path, rng, metric=metric)
    assert ids.dtype == np.uint64 and list(ids) == list(range(len(base)))
    assert c.stats()["segments"] >= 1, "the test must cover sealed graphs"
    queries = rng.standard_normal((40, base.shape[1])).astype(np.float32)
    want_ids, want_dist = brute_force(base, queries, 10, metric)
    got_ids, got_dist = c.search(queries, k=10, exact=True)
    assert got_ids.shape == (40, 10) and got_ids.dtype == np.uint64
    assert got_dist.shape == (40, 10) and got_dist.dtype == np.float32
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_dist, want_dist, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_approximate_search_round_trip(tmp_path, rng, metric):
    c, base, _ = make(tmp_path, rng, metric=metric)
    # Every stored vector finds itself first.
    got_ids, got_dist = c.search(base[:200], k=1, ef=64)
    np.testing.assert_array_equal(got_ids[:, 0], np.arange(200))
    np.testing.assert_allclose(got_dist[:, 0], 0.0, atol=1e-3)
    # Recall against numpy, and Collection.recall agrees with it.
    queries = rng.standard_normal((100, base.shape[1])).astype(np.float32)
    want, _ = brute_force(base, queries, 10, metric)
    got, dist = c.search(queries, k=10, ef=64)
    assert np.all(np.diff(dist, axis=1) >= 0), "nearest first"
    per_query = [len(set(g) & set(w)) / 10 for g, w in zip(got, want)]
    assert np.mean(per_query) >= 0.9
    by_id = c.recall(queries, k=10, ef=64, ties=False)
    assert by_id.dtype == np.float64 and by_id.shape == (100,)
    np.testing.assert_allclose(by_id, per_query)
    # A tiny ef finds less than a large one.
    assert c.recall(queries, k=10, ef=10).mean() <= c.recall(queries, k=10, ef=400).mean()
    assert c.recall(queries, k=10, ef=400).mean() >= 0.99


def test_one_vector_and_other_dtypes_are_accepted(tmp_path, rng):
    c, base, _ = make(tmp_path, rng, n=500)
    one_ids, _ = c.search(base[7], k=3)
    assert one_ids.shape == (1, 3) and one_ids[0, 0] == 7
    as_f64, _ = c.search(base[:5].astype(np.float64), k=3)
    as_list, _ = c.search(base[:5].tolist(), k=3)
    strided, _ = c.search(np.asfortranarray(base[:5]), k=3)
    for other in (as_f64, as_list, strided):
        np.testing.assert_array_equal(other[:, 0], np.arange(5))


def test_fewer_hits_than_k_are_padded(tmp_path, rng):
    c = imgsim.Collection.create(tmp_path / "small", dim=4, metric="l2")
    v = rng.standard_normal((3, 4)).astype(np.float32)
    c.add(v)
    for exact in (False, True):
        ids, dist = c.search(v, k=5, exact=exact)
        assert ids.shape == (3, 5)
        assert np.all(ids[:, 3:] == imgsim.NO_ID) and imgsim.NO_ID == 2**64 - 1
        assert np.all(np.isinf(dist[:, 3:])) and np.all(np.isfinite(dist[:, :3]))
        assert sorted(ids[0, :3]) == [0, 1, 2]


def test_delete_compact_len(tmp_path, rng):
    c, base, _ = make(tmp_path, rng, n=1500)
    assert len(c) == c.len() == 1500
    gone = np.arange(0, 1500, 3, dtype=np.uint64)
    assert c.delete(gone) == 500
    assert c.delete(gone[:10]) == 0, "already deleted"
    assert c.delete([10**9]) == 0, "never added"
    assert len(c) == 1000
    ids, _ = c.search(base, k=5, exact=True)
    assert not np.isin(ids, gone).any()
    ids, _ = c.search(base[1:2], k=1)
    assert ids[0, 0] == 1
    c.compact()
    st = c.stats()
    assert (st["count"], st["tombstones"], st["segments"], st["appendable_rows"]) == (
        1000, 0, 1, 0
    )
    np.testing.assert_array_equal(c.ids(), np.setdiff1d(np.arange(1500), gone))
    with pytest.raises(imgsim.NotFoundError, match="no item with id 0"):
        c.vector(0)
    np.testing.assert_allclose(c.vector(1), base[1])


def test_reopen_after_close_keeps_data(tmp_path, rng):
    c, base, _ = make(tmp_path, rng, n=1200)
    c.add(base[:2], external_ids=["a.jpg", 7], metadata=[{"label": "x"}, None])
    c.delete([5])
    before = c.search(base[:50], k=10)
    c.close()
    assert c.closed
    with pytest.raises(imgsim.InvalidError, match="the collection is closed"):
        c.search(base[:1], k=1)
    with imgsim.Collection.open(tmp_path / "c") as again:
        assert len(again) == 1200 + 2 - 1
        after = again.search(base[:50], k=10)
        np.testing.assert_array_equal(before[0], after[0])
        np.testing.assert_array_equal(before[1], after[1])
        item = again.item(1200)
        assert (item["external_id"], item["source"], item["attrs"]) == (
            "a.jpg", "python", {"label": "x"}
        )
        assert again.item(1201)["external_id"] == "7"
        assert again.item(1201)["attrs"] == {}
    assert again.closed


def test_a_python_collection_is_one_the_cli_reads(tmp_path, rng, imgsim_bin):
    data = tmp_path / "data"
    c = imgsim.Collection.create(data / "vecs", dim=16, metric="l2", seal_threshold=64)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    c.add(base, external_ids=[f"v{i}" for i in range(300)])
    want_ids, want_dist = c.search(base[42], k=6)
    c.close()
    out = subprocess.run(
        [imgsim_bin, "query", "--id", "42", "-k", "5", "--json", "--quiet",
         "--data-dir", str(data), "-c", "vecs"],
        capture_output=True, text=True, check=True,
    )
    answer = json.loads(out.stdout)
    # The CLI leaves the queried item out; scores are L2 distances.
    assert [r["id"] for r in answer["results"]] == list(want_ids[0, 1:])
    assert [r["path"] for r in answer["results"]] == [f"v{i}" for i in want_ids[0, 1:]]
    np.testing.assert_array_equal(
        np.array([r["score"] for r in answer["results"]], np.float32), want_dist[0, 1:]
    )


@pytest.mark.parametrize("quantization", ["sq8", "binary"])
def test_quantized_collections_search_and_rescore(tmp_path, rng, quantization):
    c = imgsim.Collection.create(
        tmp_path / "q", dim=32, metric="cosine", quantization=quantization,
        seal_threshold=512,
    )
    base = rng.standard_normal((2000, 32)).astype(np.float32)
    c.add(base)
    c.seal()
    st = c.stats()
    assert st["params"]["quantization"] == quantization
    assert st["appendable_rows"] == 0 and st["mapped_bytes"] > 0
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    want_ids, want_dist = brute_force(base, queries, 10, "cosine")
    ids, dist = c.search(queries, k=10, ef=200)
    # Rescored with the full vectors: each hit's distance is its exact one.
    hits = 0
    for row in range(len(queries)):
        exact = dict(zip(want_ids[row].tolist(), want_dist[row].tolist()))
        for i, d in zip(ids[row].tolist(), dist[row].tolist()):
            if i in exact:
                hits += 1
                assert d == pytest.approx(exact[i], abs=1e-5)
    # Binary codes of 32 dimensions are coarse: the walk finds less.
    assert hits / want_ids.size >= {"sq8": 0.9, "binary": 0.6}[quantization]
    exact_ids, _ = c.search(queries, k=10, exact=True)
    np.testing.assert_array_equal(exact_ids, want_ids)
