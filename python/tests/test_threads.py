"""The GIL is released while imgsim works: another Python thread runs
during a search or an embedding, and threads searching one collection
together get the answers of one thread."""

import threading
import time

import numpy as np

import imgsim


class Ticker:
    """A Python thread counting as fast as it can and noting the time every
    1000 steps: it advances only while it holds the GIL."""

    def __init__(self):
        self.stamps = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 1000 == 0:
                self.stamps.append(time.perf_counter())

    def __enter__(self):
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def ticking_during(call):
    """The share of `call`'s run time during which the ticker ran (from its
    first to its last note inside the call), and the run time."""
    with Ticker() as t:
        started = time.perf_counter()
        call()
        ended = time.perf_counter()
    inside = [s for s in t.stamps if started < s < ended]
    took = ended - started
    if len(inside) < 2:
        return 0.0, took
    return (inside[-1] - inside[0]) / took, took


def test_search_and_embedding_release_the_gil(tmp_path, rng, photos):
    # Exact search over an appendable segment: long enough to measure.
    c = imgsim.Collection.create(tmp_path / "c", dim=64, metric="l2", seal_threshold=10**9)
    c.add(rng.standard_normal((20000, 64)).astype(np.float32))
    q = rng.standard_normal((1000, 64)).astype(np.float32)
    # More queries until the search takes long enough to tell (fast machines).
    for _ in range(5):
        share, took = ticking_during(lambda: c.search(q, k=10, exact=True))
        if took > 0.3:
            break
        q = np.concatenate([q] * 4)
    assert took > 0.3, f"the search was too quick ({took:.3f} s) to tell"
    # Holding the GIL, the call would leave the ticker no time at all.
    assert share > 0.5, f"the ticker ran {share:.0%} of {took:.2f} s"
    e = imgsim.Embedder("resnet18", weights="synthetic:1")
    share, took = ticking_during(lambda: e.embed_files(photos[:2]))
    assert share > 0.5, f"the ticker ran {share:.0%} of {took:.2f} s"


def test_the_gil_measure_sees_a_call_that_holds_it():
    # list.sort holds the GIL throughout: the measure must say so.
    # The list grows until one sort lasts long enough for the ticker to
    # have had many chances (machines differ: 3M floats took 0.2 s here).
    x = [float(i * 7919 % 1000003) for i in range(3_000_000)]
    for _ in range(4):
        t0 = time.perf_counter()
        sorted(x)
        if time.perf_counter() - t0 >= 0.3:
            break
        x = x + x
    share, took = ticking_during(lambda: sorted(x))
    assert took > 0.2 and share < 0.1, (share, took)


def test_threads_searching_together_get_the_answers_of_one(tmp_path, rng):
    c = imgsim.Collection.create(tmp_path / "c", dim=16, metric="cosine", seal_threshold=300)
    c.add(rng.standard_normal((2000, 16)).astype(np.float32))
    queries = [rng.standard_normal((50, 16)).astype(np.float32) for _ in range(8)]
    alone = [c.search(q, k=5) for q in queries]
    together = [None] * len(queries)

    def work(i):
        together[i] = c.search(queries[i], k=5)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a_ids, a_d), (t_ids, t_d) in zip(alone, together):
        np.testing.assert_array_equal(a_ids, t_ids)
        np.testing.assert_array_equal(a_d, t_d)
