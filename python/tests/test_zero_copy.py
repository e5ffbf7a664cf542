"""Where imgsim claims no copy: results are numpy arrays over the buffers
Rust filled (no copy on the way out), and a C-contiguous float32 query
array is read in place (numpy allocates nothing for it; another dtype is
converted once, which the same measure sees)."""

import tracemalloc

import numpy as np

import imgsim


def over_rust_buffer(a: np.ndarray) -> bool:
    """True when `a` views memory numpy did not allocate: the buffer of a
    Rust Vec handed over by the numpy crate (a PySliceContainer)."""
    return not a.flags["OWNDATA"] and type(a.base).__name__ == "PySliceContainer"


def test_results_are_handed_over_without_a_copy(tmp_path, rng, photos):
    c = imgsim.Collection.create(tmp_path / "c", dim=8, metric="l2")
    ids = c.add(rng.standard_normal((50, 8)).astype(np.float32))
    found, dist = c.search(rng.standard_normal((4, 8)).astype(np.float32), k=3)
    e = imgsim.Embedder("resnet18", weights="synthetic:1")
    vectors = e.embed_bytes([open(photos[0], "rb").read()])
    recalls = c.recall(rng.standard_normal((4, 8)).astype(np.float32), k=3)
    for a in (ids, found, dist, vectors, recalls):
        assert over_rust_buffer(a)
    for a in (found, dist, vectors):
        assert a.flags["C_CONTIGUOUS"] and a.flags["WRITEABLE"]
    # A numpy-made array is not (the check can fail).
    assert not over_rust_buffer(np.zeros(3))


def numpy_bytes_allocated_during(call) -> int:
    """Peak bytes numpy allocated (it reports to tracemalloc) during `call`."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def test_float32_queries_are_read_in_place(tmp_path, rng):
    c = imgsim.Collection.create(tmp_path / "c", dim=64, metric="l2")
    c.add(rng.standard_normal((200, 64)).astype(np.float32))
    q32 = rng.standard_normal((20000, 64)).astype(np.float32)  # 5 MiB
    q64 = q32.astype(np.float64)
    in_place = numpy_bytes_allocated_during(lambda: c.search(q32, k=1, exact=True))
    converted = numpy_bytes_allocated_during(lambda: c.search(q64, k=1, exact=True))
    assert in_place < q32.nbytes // 10, in_place
    assert converted >= q32.nbytes, converted
