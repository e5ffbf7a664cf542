"""Sharded search on Ray Serve: a deployment per shard, and an ingress that fans each search out to every shard, merges the top k and answers imgsim serve's search API.

``python -m imgsim.ray serve --collections OUT`` (see ``__main__``). Each
shard of OUT (``shard-00`` ...) is a deployment with ``--replicas``
replicas; a replica copies its shard into a folder of its own and opens the
copy (a collection is open in one process at a time), so replicas of a
shard are independent. The ingress speaks what ``imgsim serve`` does for
searches, on ``/collections/NAME/search`` and ``/search/batch``: the same
request forms (JSON vector or id, binary vectors, an uploaded image, words
on a CLIP collection) and parameters (``k``, ``ef``, ``exact``,
``with_recall``), the same answer JSON (``results`` of ``rank``, ``id``,
``score``, ``path``; ``took_ms``, ``timings``, ``ef``, and with
``with_recall`` the exact list and ``recall_at_k``), the same error JSON.
Differences: an id is global, ``shard << 40 | the shard's own id``;
``recall_at_k`` is the merged answer's against the exact top k of all
shards together (the union of their exact lists); each answer also carries
``shards`` (how many answered, each one's search time); ``label`` and words
mixed with an image are refused (400). A shard none of whose replicas
answers within ``--shard-timeout`` makes the answer a 503 that names it,
or, with ``partial=true``, a 200 whose ``missing_shards`` names it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs

import numpy as np
import numpy.typing as npt

import imgsim

from .shards import global_id, shard_dirs, shard_name, split_global_id

#: The limits of imgsim serve (``MAX_K``, ``MAX_EF``, ``[server] max_batch``).
MAX_K = 1000
MAX_EF = 100_000
MAX_BATCH = 1000
#: The binary vectors media type of imgsim serve.
VECTORS_MEDIA_TYPE = "application/x-imgsim-f32le"
_SEARCH_FIELDS = {"vector", "id", "text", "text_weight", "label", "k", "ef", "exact", "with_recall"}


class ApiError(Exception):
    """An error answer: an HTTP status and imgsim serve's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- one shard


class ShardSearcher:
    """A replica of one shard: searches its own copy of the shard collection."""

    def __init__(self, shard: int, source: str, replica_dir: Optional[str]) -> None:
        self.shard = shard
        self.name = shard_name(shard)
        if not os.path.isdir(source):
            raise FileNotFoundError(f"{self.name}: no collection at {source}")
        self._dir = tempfile.mkdtemp(prefix=f"imgsim-{self.name}-", dir=replica_dir)
        copy = os.path.join(self._dir, self.name)
        started = time.perf_counter()
        shutil.copytree(source, copy)
        self.copy_seconds = time.perf_counter() - started
        self.coll = imgsim.Collection.open(copy)
        self._embedder: Optional[imgsim.Embedder] = None

    def __del__(self) -> None:
        coll = getattr(self, "coll", None)
        if coll is not None:
            coll.close()
        if hasattr(self, "_dir"):
            shutil.rmtree(self._dir, ignore_errors=True)

    def info(self) -> Dict[str, Any]:
        import ray

        return {
            "shard": self.shard, "name": self.name, "count": len(self.coll), "dim": self.coll.dim,
            "metric": self.coll.metric, "ef_search": self.coll.ef_search, "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(), "copy_seconds": self.copy_seconds,
        }

    def _hits(self, ids: npt.NDArray[np.uint64], dist: npt.NDArray[np.float32],
              exclude: Optional[int], k: int) -> Tuple[List[int], List[float], List[str]]:
        out_ids: List[int] = []
        out_dist: List[float] = []
        paths: List[str] = []
        for i, d in zip(ids.tolist(), dist.tolist()):
            if i == imgsim.NO_ID or i == exclude or len(out_ids) == k:
                continue
            out_ids.append(global_id(self.shard, i))
            out_dist.append(d)
            paths.append(str(self.coll.item(i)["external_id"]))
        return out_ids, out_dist, paths

    def search(self, vectors: npt.NDArray[np.float32], k: int, ef: Optional[int], exact: bool,
               with_recall: bool, exclude: Optional[int]) -> List[Dict[str, Any]]:
        """Per query: the shard's ``k`` nearest (global ids, distances,
        paths), and with ``with_recall`` its exact ``k`` nearest; the time
        each search took. ``exclude`` (a local id) is left out."""
        kk = k + (1 if exclude is not None else 0)
        kk = min(kk, max(1, len(self.coll)))
        t = time.perf_counter()
        ids, dist = self.coll.search(vectors, k=kk, ef=None if exact else ef, exact=exact)
        search_ms = (time.perf_counter() - t) * 1e3
        exact_ms = 0.0
        truth: Optional[Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]] = None
        if with_recall and not exact:
            t = time.perf_counter()
            truth = self.coll.search(vectors, k=kk, exact=True)
            exact_ms = (time.perf_counter() - t) * 1e3
        out = []
        for q in range(len(vectors)):
            a = self._hits(ids[q], dist[q], exclude, k)
            row: Dict[str, Any] = {"ids": a[0], "dist": a[1], "paths": a[2], "search_ms": search_ms, "exact_ms": exact_ms}
            if truth is not None:
                e = self._hits(truth[0][q], truth[1][q], exclude, k)
                row.update(exact_ids=e[0], exact_dist=e[1], exact_paths=e[2])
            out.append(row)
        return out

    def vector(self, local_id: int) -> Optional[npt.NDArray[np.float32]]:
        """The stored vector of ``local_id``; None when there is no such item."""
        try:
            return self.coll.vector(local_id)
        except imgsim.NotFoundError:
            return None

    def _query_embedder(self) -> imgsim.Embedder:
        if self._embedder is None:
            self._embedder = self.coll.embedder()
        return self._embedder

    def embed_image(self, data: bytes) -> Tuple[npt.NDArray[np.float32], float]:
        """An uploaded image's vector, embedded as the shard's images were,
        and the milliseconds decoding and embedding took."""
        e = self._query_embedder()
        t = time.perf_counter()
        v = e.embed_bytes([data])[0]
        return v, (time.perf_counter() - t) * 1e3

    def embed_text(self, text: str) -> Tuple[npt.NDArray[np.float32], float]:
        """Words' vector (CLIP collections) and the milliseconds it took."""
        e = self._query_embedder()
        t = time.perf_counter()
        v = e.embed_texts([text])[0]
        return v, (time.perf_counter() - t) * 1e3


# ---------------------------------------------------------------- merging


def _f32(x: float) -> float:
    # The float32 value as imgsim serve writes it (shortest digits).
    return float(str(np.float32(x)))


def merge(rows: Sequence[Dict[str, Any]], k: int, prefix: str = "") -> List[Tuple[float, int, str]]:
    """The ``k`` nearest of the shards' answers to one query: (distance,
    global id, path), nearest first, ties by id."""
    hits = [(d, i, p) for r in rows for d, i, p in zip(r[prefix + "dist"], r[prefix + "ids"], r[prefix + "paths"])]
    hits.sort(key=lambda h: (h[0], h[1]))
    return hits[:k]


def recall_at_k(approx: Sequence[Tuple[float, int, str]], exact: Sequence[Tuple[float, int, str]], k: int) -> float:
    """imgsim's recall with ties (``recall_at_k_by_distance``, in float32):
    hits of the first ``k`` as close as the exact k-th count."""
    k = min(k, len(exact))
    if k == 0:
        return 1.0
    threshold = np.float32(exact[k - 1][0]) + np.float32(imgsim.RECALL_EPSILON)
    return sum(1 for h in approx[:k] if np.float32(h[0]) <= threshold) / k


# ---------------------------------------------------------------- the ingress


@dataclasses.dataclass
class Search:
    """One search, parsed: its vector (or how to get it) and parameters."""

    k: int = 10
    ef: Optional[int] = None
    exact: bool = False
    with_recall: bool = False
    vector: Optional[npt.NDArray[np.float32]] = None
    id: Optional[int] = None
    image: Optional[bytes] = None
    text: Optional[str] = None


def _bool(v: Any, name: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "1", "false", "0"):
        return v.lower() in ("true", "1")
    raise ApiError(400, f"{name} must be true or false, not {v!r}")


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    try:
        n = int(v)
        if isinstance(v, float) and v != n or isinstance(v, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer, not {v!r}") from None
    if not lo <= n <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, not {n}")
    return n


def apply_params(s: Search, p: Dict[str, Any]) -> None:
    """Sets ``s``'s parameters from query-string, form or JSON values;
    refuses what the sharded service does not do."""
    if p.get("label") is not None:
        raise ApiError(400, "label filters are not available on the sharded service (imgsim.ray serve)")
    if p.get("text_weight") is not None:
        raise ApiError(400, "words mixed with an image, a vector or an id are not available on the sharded service")
    if p.get("k") is not None:
        s.k = _int(p["k"], "k", 1, MAX_K)
    if p.get("ef") is not None:
        s.ef = _int(p["ef"], "ef", 1, MAX_EF)
    if p.get("exact") is not None:
        s.exact = _bool(p["exact"], "exact")
    if p.get("with_recall") is not None:
        s.with_recall = _bool(p["with_recall"], "with_recall")


def _vector(v: Any, dim: int, what: str) -> npt.NDArray[np.float32]:
    try:
        a = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError):
        raise ApiError(400, f"{what} must be a list of numbers") from None
    if a.ndim != 1 or a.shape[0] != dim:
        raise ApiError(400, f"{what} has {a.size} values; the collection holds {dim}-dimensional vectors")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ApiError(400, f"{what} has a non-finite component at position {int(bad[0])}")
    return a


def search_from_json(body: Any, defaults: Dict[str, Any], dim: int, what: str = "the query vector") -> Search:
    """A search from a JSON object, over the query string's ``defaults``."""
    if not isinstance(body, dict):
        raise ApiError(400, "the JSON body must be an object")
    unknown = sorted(set(body) - _SEARCH_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field `{unknown[0]}`, expected one of {sorted(_SEARCH_FIELDS)}")
    s = Search()
    apply_params(s, {**defaults, **{k: v for k, v in body.items() if v is not None}})
    given = [f for f in ("vector", "id", "text") if body.get(f) is not None]
    if not given:
        raise ApiError(400, "give one of `vector`, `id` or `text`, or upload an image")
    if len(given) > 1:
        raise ApiError(400, "words mixed with an image, a vector or an id are not available on the sharded service")
    if body.get("vector") is not None:
        s.vector = _vector(body["vector"], dim, what)
    elif body.get("id") is not None:
        s.id = _int(body["id"], "id", 0, (1 << 53) - 1)
    else:
        s.text = str(body["text"])
    return s


def _status_of(e: imgsim.Error) -> int:
    """imgsim serve's HTTP status for an error class."""
    for cls, status in ((imgsim.InvalidError, 400), (imgsim.NotFoundError, 404), (imgsim.UnsupportedError, 415),
                        (imgsim.UnprocessableError, 422), (imgsim.TooLargeError, 413)):
        if isinstance(e, cls):
            return status
    return 500


class Ingress:
    """The HTTP entry: parses a search, fans it out to every shard, merges."""

    def __init__(self, name: str, shards: List[Any], dim: int, metric: str, ef_search: int,
                 timeout_s: float) -> None:
        self.name = name
        self.shards = shards
        self.dim = dim
        self.metric = metric
        self.ef_search = ef_search
        self.timeout_s = timeout_s
        self._next = 0

    # -- calls to shards

    async def _call(self, s: int, method: str, *args: Any) -> Any:
        """``method`` of a replica of shard ``s``; a replica that dies in the
        call is tried again on another; raises ApiError 503 when no replica
        answers within the shard timeout."""
        deadline = time.monotonic() + self.timeout_s
        last = "no replica answered"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            resp = getattr(self.shards[s], method).remote(*args)
            try:
                return await asyncio.wait_for(resp, timeout=left)
            except asyncio.TimeoutError:
                resp.cancel()
                last = f"no replica answered within {self.timeout_s:g} s"
                break
            except imgsim.Error as e:
                # The replica answered: the request is at fault (a damaged
                # image...), not the replica. Ray wraps the error; its cause
                # has imgsim's message.
                cause = getattr(e, "cause", None) or e
                raise ApiError(_status_of(e), str(cause)) from None
            except Exception as e:  # a replica died or failed: another one
                last = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                await asyncio.sleep(0.05)
        raise ApiError(503, f"shard {s} ({shard_name(s)}) is missing: {last}")

    async def _any_shard(self, method: str, *args: Any) -> Any:
        """``method`` on whichever shard answers first in turn (embedding)."""
        errors = []
        for j in range(len(self.shards)):
            s = (self._next + j) % len(self.shards)
            try:
                result = await self._call(s, method, *args)
                self._next = s + 1
                return result
            except ApiError as e:
                if e.status != 503:
                    raise
                errors.append(e.message)
        raise ApiError(503, "no shard could embed the query: " + "; ".join(errors))

    async def fan_out(self, vectors: npt.NDArray[np.float32], s: Search, exclude: Optional[Tuple[int, int]],
                      partial: bool) -> Tuple[List[Optional[List[Dict[str, Any]]]], List[str]]:
        """Every shard's answers to ``vectors``; None for a missing shard,
        whose name is listed (ApiError 503 unless ``partial``)."""
        async def one(i: int) -> Optional[List[Dict[str, Any]]]:
            ex = exclude[1] if exclude is not None and exclude[0] == i else None
            try:
                r: List[Dict[str, Any]] = await self._call(i, "search", vectors, s.k, s.ef, s.exact, s.with_recall, ex)
                return r
            except ApiError:
                if not partial:
                    raise
                return None

        results = await asyncio.gather(*(one(i) for i in range(len(self.shards))), return_exceptions=True)
        missing = [shard_name(i) for i, r in enumerate(results) if r is None or isinstance(r, ApiError)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            api = [e for e in errors if isinstance(e, ApiError)]
            if len(api) != len(errors):
                raise next(e for e in errors if not isinstance(e, ApiError))
            names = ", ".join(missing)
            raise ApiError(503, f"{len(api)} of {len(self.shards)} shards missing ({names}); the answer would lack "
                                f"their images, so none is given (partial=true answers without them): "
                                + "; ".join(e.message for e in api))
        return [r if not isinstance(r, BaseException) else None for r in results], missing

    def _hit(self, rank: int, h: Tuple[float, int, str]) -> Dict[str, Any]:
        d = np.float32(h[0])
        score = np.float32(1.0) - d if self.metric == "cosine" else d
        return {"rank": rank, "id": h[1], "score": _f32(float(score)), "path": h[2]}

    def answer(self, per_shard: List[Optional[List[Dict[str, Any]]]], q: int, s: Search, missing: List[str],
               started: float, embed_ms: float) -> Dict[str, Any]:
        """The answer JSON to query ``q`` of a fan-out."""
        rows = [r[q] for r in per_shard if r is not None]
        found = merge(rows, s.k)
        ans: Dict[str, Any] = {
            "results": [self._hit(i + 1, h) for i, h in enumerate(found)],
            "took_ms": (time.perf_counter() - started) * 1e3,
            "timings": {
                "decode_ms": 0.0,
                "embed_ms": embed_ms,
                "search_ms": max((r["search_ms"] for r in rows), default=0.0),
                "exact_ms": max((r["exact_ms"] for r in rows), default=0.0),
            },
            "ef": 0 if s.exact else max(s.ef or self.ef_search, s.k),
            "shards": {"count": len(per_shard), "answered": len(rows), "search_ms": [r["search_ms"] for r in rows]},
        }
        if s.with_recall:
            truth = found if s.exact else merge(rows, s.k, "exact_")
            ans["exact"] = [self._hit(i + 1, h) for i, h in enumerate(truth)]
            ans["recall_at_k"] = 1.0 if s.exact else recall_at_k(found, truth, s.k)
        if missing:
            ans["missing_shards"] = missing
        return ans

    async def _resolve(self, s: Search) -> Tuple[npt.NDArray[np.float32], Optional[Tuple[int, int]], float]:
        """The query vector of ``s``, the item to leave out, the embedding ms."""
        if s.vector is not None:
            return s.vector, None, 0.0
        if s.id is not None:
            shard, local = split_global_id(s.id)
            if shard >= len(self.shards):
                raise ApiError(404, f"no item with id {s.id}")
            v = await self._call(shard, "vector", local)
            if v is None:
                raise ApiError(404, f"no item with id {s.id}")
            return np.asarray(v, dtype=np.float32), (shard, local), 0.0
        if s.image is not None:
            v, ms = await self._any_shard("embed_image", s.image)
        else:
            assert s.text is not None
            v, ms = await self._any_shard("embed_text", s.text)
        return np.asarray(v, dtype=np.float32), None, ms

    async def run_search(self, s: Search, partial: bool) -> Dict[str, Any]:
        started = time.perf_counter()
        v, exclude, embed_ms = await self._resolve(s)
        per_shard, missing = await self.fan_out(v[None, :], s, exclude, partial)
        return self.answer(per_shard, 0, s, missing, started, embed_ms)

    async def run_batch(self, searches: List[Search], partial: bool) -> Dict[str, Any]:
        started = time.perf_counter()
        resolved = await asyncio.gather(*(self._resolve(s) for s in searches))
        # Searches by vector with the same parameters go out together.
        groups: Dict[Tuple[Any, ...], List[int]] = {}
        singles: List[int] = []
        for i, (s, (_, exclude, _)) in enumerate(zip(searches, resolved)):
            if exclude is None:
                groups.setdefault((s.k, s.ef, s.exact, s.with_recall), []).append(i)
            else:
                singles.append(i)
        answers: List[Optional[Dict[str, Any]]] = [None] * len(searches)

        async def group(idx: List[int]) -> None:
            vs = np.stack([resolved[i][0] for i in idx])
            per_shard, missing = await self.fan_out(vs, searches[idx[0]], None, partial)
            for q, i in enumerate(idx):
                answers[i] = self.answer(per_shard, q, searches[i], missing, started, resolved[i][2])

        async def single(i: int) -> None:
            per_shard, missing = await self.fan_out(resolved[i][0][None, :], searches[i], resolved[i][1], partial)
            answers[i] = self.answer(per_shard, 0, searches[i], missing, started, resolved[i][2])

        await asyncio.gather(*(group(ix) for ix in groups.values()), *(single(i) for i in singles))
        return {"results": answers, "took_ms": (time.perf_counter() - started) * 1e3}

    # -- HTTP

    async def stats(self) -> Dict[str, Any]:
        infos = await asyncio.gather(*(self._call(i, "info") for i in range(len(self.shards))), return_exceptions=True)
        shards: List[Dict[str, Any]] = []
        for i, info in enumerate(infos):
            shards.append(info if isinstance(info, dict) else {"shard": i, "name": shard_name(i), "missing": True})
        return {
            "name": self.name, "count": sum(int(s.get("count", 0)) for s in shards), "dim": self.dim,
            "metric": self.metric, "ef": self.ef_search, "shards": shards,
            "missing_shards": [s["name"] for s in shards if s.get("missing")],
        }

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            return JSONResponse(await self._route(request))
        except ApiError as e:
            return JSONResponse({"error": {"status": e.status, "message": e.message}}, status_code=e.status)

    async def _route(self, request: Any) -> Dict[str, Any]:
        parts = [p for p in request.url.path.split("/") if p]
        method = request.method
        if parts == ["health"]:
            return {"status": "ok"}
        if parts == ["collections"] and method == "GET":
            st = await self.stats()
            return {"collections": [{"name": self.name, "count": st["count"], "dim": self.dim,
                                     "metric": self.metric, "shards": len(self.shards), "text": False}]}
        if len(parts) >= 2 and parts[0] == "collections":
            if parts[1] != self.name:
                raise ApiError(404, f"no collection `{parts[1]}`; this service has `{self.name}`")
            rest = parts[2:]
            if rest == ["stats"] and method == "GET":
                return await self.stats()
            if rest in (["search"], ["search", "batch"]):
                if method != "POST":
                    raise ApiError(405, "use POST")
                query = {k: v[-1] for k, v in parse_qs(request.url.query).items()}
                partial = _bool(query.pop("partial", "false"), "partial")
                if rest == ["search"]:
                    return await self.run_search(await self._parse_search(request, query), partial)
                return await self.run_batch(await self._parse_batch(request, query), partial)
        raise ApiError(404, f"no route {method} {request.url.path}")

    async def _parse_search(self, request: Any, query: Dict[str, Any]) -> Search:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                body = json.loads(await request.body())
            except ValueError as e:
                raise ApiError(400, f"the body is not JSON: {e}") from None
            return search_from_json(body, query, self.dim)
        s = Search()
        if ctype == VECTORS_MEDIA_TYPE:
            apply_params(s, query)
            raw = await request.body()
            if len(raw) != 4 * self.dim:
                raise ApiError(400, f"the body holds {len(raw)} bytes; one {self.dim}-dimensional vector is {4 * self.dim}")
            s.vector = _vector(np.frombuffer(raw, dtype="<f4"), self.dim, "the query vector")
            return s
        if ctype == "multipart/form-data":
            form = await request.form()
            fields = {k: v for k, v in form.items() if k != "image"}
            apply_params(s, {**query, **fields})
            image = form.get("image")
            if image is None:
                if fields.get("text"):
                    s.text = str(fields["text"])
                    return s
                raise ApiError(400, "the form has no field `image`")
            if fields.get("text"):
                raise ApiError(400, "words mixed with an image are not available on the sharded service")
            s.image = await image.read() if hasattr(image, "read") else str(image).encode()
            return s
        apply_params(s, query)
        if query.get("text") is not None:
            s.text = str(query["text"])
            return s
        raw = await request.body()
        if not raw:
            raise ApiError(400, "give one of `vector`, `id` or `text`, or upload an image")
        s.image = raw
        return s

    async def _parse_batch(self, request: Any, query: Dict[str, Any]) -> List[Search]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        raw = await request.body()
        if ctype == VECTORS_MEDIA_TYPE:
            row = 4 * self.dim
            if len(raw) % row:
                raise ApiError(400, f"the body holds {len(raw)} bytes, not a multiple of one {self.dim}-dimensional vector ({row})")
            n = len(raw) // row
            if n > MAX_BATCH:
                raise ApiError(413, f"the batch holds {n} searches; at most {MAX_BATCH}")
            vs = np.frombuffer(raw, dtype="<f4").reshape(n, self.dim)
            out = []
            for i in range(n):
                s = Search()
                apply_params(s, query)
                s.vector = _vector(vs[i], self.dim, f"vector {i}")
                out.append(s)
            return out
        if ctype != "application/json":
            raise ApiError(415, f"a batch is JSON or {VECTORS_MEDIA_TYPE}, not {ctype or 'no content type'}")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict) or set(body) != {"searches"} or not isinstance(body["searches"], list):
            raise ApiError(400, 'a batch is {"searches": [...]}')
        if len(body["searches"]) > MAX_BATCH:
            raise ApiError(413, f"the batch holds {len(body['searches'])} searches; at most {MAX_BATCH}")
        out = []
        for i, item in enumerate(body["searches"]):
            try:
                out.append(search_from_json(item, query, self.dim))
            except ApiError as e:
                raise ApiError(e.status, f"searches[{i}]: {e.message}") from None
        return out


# ---------------------------------------------------------------- deploying


@dataclasses.dataclass
class ServeOptions:
    """How the sharded service is deployed."""

    collections: Path
    name: Optional[str] = None
    replicas: int = 2
    replica_cpus: float = 0.1
    host: str = "127.0.0.1"
    port: int = 8000
    replica_dir: Optional[Path] = None
    shard_timeout_s: float = 5.0
    detach: bool = False


def build_app(opts: ServeOptions) -> Any:
    """The Ray Serve application: a deployment per shard, and the ingress."""
    from ray import serve

    if opts.replicas < 1:
        raise ValueError("--replicas must be at least 1")
    dirs = shard_dirs(opts.collections)
    dims, metrics, efs = set(), set(), set()
    for d in dirs:
        with imgsim.Collection.open(d) as c:
            dims.add(c.dim)
            metrics.add(c.metric)
            efs.add(c.ef_search)
    if len(dims) != 1 or len(metrics) != 1:
        raise ValueError(f"the shards of {opts.collections} disagree: dimensions {sorted(dims)}, metrics {sorted(metrics)}")
    replica_dir = str(opts.replica_dir) if opts.replica_dir else None
    if opts.replica_dir:
        opts.replica_dir.mkdir(parents=True, exist_ok=True)
    deployment: Any = serve.deployment
    shard_deployment = deployment(ShardSearcher)
    shards = [
        shard_deployment.options(
            name=shard_name(i), num_replicas=opts.replicas,
            ray_actor_options={"num_cpus": opts.replica_cpus},
            health_check_period_s=2, health_check_timeout_s=10,
        ).bind(i, str(d.resolve()), replica_dir)
        for i, d in enumerate(dirs)
    ]
    name = opts.name or opts.collections.resolve().name
    ingress = deployment(Ingress).options(name="ingress", num_replicas=1, ray_actor_options={"num_cpus": 0})
    return ingress.bind(name, shards, dims.pop(), metrics.pop(), max(efs), opts.shard_timeout_s)


def run_serve(opts: ServeOptions) -> None:
    """Deploys the sharded service on the cluster (RAY_ADDRESS), its HTTP
    proxy on the head node only, bound to ``opts.host``; blocks until
    interrupted unless ``opts.detach``."""
    import ray
    from ray import serve

    app = build_app(opts)
    if not ray.is_initialized():
        ray.init()
    serve.start(proxy_location="HeadOnly", http_options={"host": opts.host, "port": opts.port})
    serve.run(app, name="imgsim", route_prefix="/", blocking=False)
    print(f"serving {opts.collections} on http://{opts.host}:{opts.port}/ "
          f"({len(shard_dirs(opts.collections))} shards x {opts.replicas} replicas)", flush=True)
    if opts.detach:
        return
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
