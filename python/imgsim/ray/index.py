"""The distributed indexing job: Ray Data reads image files, an actor pool embeds them, the driver writes N shard collections.

``python -m imgsim.ray index --input DIR_OR_GLOB --collections OUT --shards N
--backbone B --weights W`` (see ``__main__``). The pipeline, streamed with
Ray Data's back-pressure:

1. the driver lists the files, opens (or creates) the shards and reads each
   shard's catalog, keeping only new and changed files (incremental: size
   and modification time, as ``imgsim index`` decides);
2. read tasks read each file's bytes, sniff its format and hash it
   (blake3), recording a file that cannot be read as failed;
3. a pool of actors, each loading the model once, embeds batches of images
   (a damaged image fails alone);
4. the driver adds each batch's vectors to the shards their paths hash to,
   with the metadata ``imgsim index`` records, and removes the entries the
   changed files replace.

The vectors are bit for bit those ``imgsim index`` stores for the same
files and embedder (``tools/ray/check_index.py`` checks it): the actors
hand on the model's vectors, and the shard's insert normalises them, as
it does for ``imgsim index``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

import imgsim

from .shards import (
    SOURCE_FILE,
    EmbedderSpec,
    InputFile,
    Known,
    catalog,
    create_shard,
    shard_dirs,
    shard_name,
    shard_of,
    sniff,
)

#: Row kinds the pipeline carries.
OK, FAILED, NOT_IMAGE = "ok", "failed", "not_image"

Batch = Dict[str, npt.NDArray[Any]]


@dataclasses.dataclass
class IndexOptions:
    """How the job runs."""

    batch_size: int = 16
    actors: Optional[int] = None
    cpus_per_actor: float = 0.75
    threads_per_actor: int = 1
    read_cpus: float = 0.25
    commit_size: int = 256
    exclude: Sequence[str] = ()


@dataclasses.dataclass
class Summary:
    """What a run did; ``as_json`` is what the command prints."""

    collections: str
    shards: int
    files: int = 0
    indexed: int = 0
    replaced: int = 0
    unchanged: int = 0
    failed: int = 0
    not_images: int = 0
    stale_removed: int = 0
    repeated_rows: int = 0
    actors: int = 0
    seconds: float = 0.0
    pipeline_seconds: float = 0.0
    images_per_s: float = 0.0
    first_result_seconds: float = 0.0
    steady_images_per_s: float = 0.0
    per_shard: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    errors: List[Dict[str, str]] = dataclasses.field(default_factory=list)

    def as_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- read stage


def read_files(batch: Batch) -> Batch:
    """Ray Data read step: each file's bytes, size, modification time,
    format and blake3, or why it could not be read (kind ``failed``) or is
    not an image (kind ``not_image``)."""
    import blake3  # in the workers: tools/ray/setup.sh installs it

    paths = [str(p) for p in batch["path"]]
    n = len(paths)
    out_bytes = np.empty(n, dtype=object)
    size = np.zeros(n, dtype=np.int64)
    mtime = np.zeros(n, dtype=np.int64)
    fmt = np.empty(n, dtype=object)
    digest = np.empty(n, dtype=object)
    error = np.empty(n, dtype=object)
    kind = np.empty(n, dtype=object)
    for i, path in enumerate(paths):
        out_bytes[i], fmt[i], digest[i], error[i], kind[i] = b"", "", "", "", OK
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except OSError as e:
            error[i], kind[i] = f"cannot read: {e.strerror or e}", FAILED
            continue
        size[i], mtime[i] = len(data), st.st_mtime_ns
        found = sniff(data[:64])
        if found is None:
            kind[i] = NOT_IMAGE if data else FAILED
            error[i] = "" if data else "empty file (0 bytes)"
            continue
        out_bytes[i], fmt[i], digest[i] = data, found, blake3.blake3(data).hexdigest()
    return {
        "path": np.array(paths, dtype=object),
        "bytes": out_bytes,
        "size": size,
        "mtime_ns": mtime,
        "format": fmt,
        "blake3": digest,
        "error": error,
        "kind": kind,
    }


# ---------------------------------------------------------------- embed stage


class EmbedActor:
    """Ray Data actor: loads the embedder once, embeds batches of image bytes."""

    def __init__(self, spec: EmbedderSpec, threads: int) -> None:
        # imgsim's thread pool starts on first use, which is below: this
        # actor's process gets `threads` of them (a runtime_env would start
        # a fresh worker process per actor, seconds later).
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        started = time.perf_counter()
        self.embedder = spec.load()
        self.load_seconds = time.perf_counter() - started
        self.exact_decode = spec.exact_decode

    def _embed(self, images: List[bytes]) -> npt.NDArray[np.float32]:
        # One model call for the whole batch (an image's vector does not
        # depend on the batch it is in).
        return self.embedder.embed_bytes(images, batch_size=len(images), exact_decode=self.exact_decode)

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch["path"])
        vectors = np.zeros((n, self.embedder.dim), dtype=np.float32)
        error = np.array(batch["error"], dtype=object)
        kind = np.array(batch["kind"], dtype=object)
        todo = [i for i in range(n) if kind[i] == OK]
        images = [bytes(batch["bytes"][i]) for i in todo]
        if todo:
            try:
                vectors[todo] = self._embed(images)
            except imgsim.Error:
                # Find the images that fail: each alone.
                for i, img in zip(todo, images):
                    try:
                        vectors[i] = self._embed([img])[0]
                    except imgsim.Error as e:
                        error[i], kind[i] = str(e).replace("bytes[0]", "the image"), FAILED
        return {
            "path": batch["path"],
            "vector": vectors,
            "size": batch["size"],
            "mtime_ns": batch["mtime_ns"],
            "format": batch["format"],
            "blake3": batch["blake3"],
            "error": error,
            "kind": kind,
        }


# ---------------------------------------------------------------- the driver


def _same_embedder(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    keys = ("architecture", "dim", "metric", "weights_digest", "preprocessing")
    return all(a.get(k) == b.get(k) for k in keys)


def open_shards(out: Path, shards: int, spec: EmbedderSpec) -> List[imgsim.Collection]:
    """Opens the ``shards`` shard collections of ``out``, creating those that
    do not exist; refuses shards made with another embedder, and a folder
    holding another number of shards."""
    out.mkdir(parents=True, exist_ok=True)
    existing = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("shard-")]
    if existing:
        have = len(shard_dirs(out))
        if have != shards:
            raise ValueError(
                f"{out} holds {have} shards; this run asks for {shards} "
                "(a sharded collection keeps its number of shards: index into a new folder)"
            )
    missing = [i for i in range(shards) if not (out / shard_name(i)).exists()]
    embedder: Optional[imgsim.Embedder] = None
    if missing:
        embedder = spec.load()
        made = embedder
        with ThreadPoolExecutor(max_workers=min(8, len(missing))) as pool:
            list(pool.map(lambda i: create_shard(out, i, made), missing))
    wanted: Optional[Dict[str, Any]] = None
    colls: List[imgsim.Collection] = []
    try:
        for i in range(shards):
            path = out / shard_name(i)
            if i in missing:
                colls.append(imgsim.Collection.open(path))
                continue
            c = imgsim.Collection.open(path)
            colls.append(c)
            recorded = c.embedder()
            if wanted is None:
                wanted = (embedder or spec.load()).identity
            if not _same_embedder(recorded.identity, wanted) or recorded.exact_decode != spec.exact_decode:
                raise imgsim.ConflictError(
                    f"{path} was indexed with {recorded.identity.get('architecture')} "
                    f"(weights {recorded.identity.get('weights_digest')}, exact_decode {recorded.exact_decode}); "
                    f"this run asks for {wanted.get('architecture')} (weights {wanted.get('weights_digest')}, "
                    f"exact_decode {spec.exact_decode})"
                )
    except BaseException:
        for c in colls:
            c.close()
        raise
    return colls


class ShardWriter:
    """Adds embedded rows to the shards their paths hash to, in commits of
    ``commit_size``; each path once per run."""

    def __init__(self, colls: List[imgsim.Collection], known: List[Dict[str, Known]], commit_size: int) -> None:
        self.colls = colls
        self.known = known
        self.commit_size = commit_size
        self.pending: List[List[Tuple[str, npt.NDArray[np.float32], Dict[str, Any]]]] = [[] for _ in colls]
        self.written: set[str] = set()
        self.indexed = 0
        self.replaced = 0
        self.repeated = 0
        #: Rows the shard refused (a NaN or zero vector): path and reason.
        self.failures: List[Dict[str, str]] = []

    def add(self, path: str, vector: npt.NDArray[np.float32], meta: Dict[str, Any]) -> None:
        if path in self.written:
            # A row seen twice (a task re-run after a failure): stored once.
            self.repeated += 1
            return
        self.written.add(path)
        s = shard_of(path, len(self.colls))
        self.pending[s].append((path, vector, meta))
        if len(self.pending[s]) >= self.commit_size:
            self.commit(s)

    def commit(self, s: int) -> None:
        rows, self.pending[s] = self.pending[s], []
        if not rows:
            return
        coll = self.colls[s]
        try:
            coll.add(np.stack([r[1] for r in rows]), external_ids=[r[0] for r in rows],
                     metadata=[r[2] for r in rows], source=SOURCE_FILE)
        except imgsim.InvalidError:
            # A vector the shard refuses fails its file, not the commit.
            kept = []
            for r in rows:
                try:
                    coll.add(r[1][None, :], external_ids=[r[0]], metadata=[r[2]], source=SOURCE_FILE)
                    kept.append(r)
                except imgsim.InvalidError as e:
                    self.failures.append({"path": r[0], "error": f"unusable embedding: {e}"})
            rows = kept
        # The new entries are durable: now remove those they replace (a
        # crash in between leaves a stale entry the next run removes).
        old = [self.known[s][r[0]].id for r in rows if r[0] in self.known[s]]
        if old:
            self.colls[s].delete(old)
        self.indexed += len(rows)
        self.replaced += len(old)

    def flush(self) -> None:
        for s in range(len(self.colls)):
            self.commit(s)


def run_index(
    inputs: Sequence[str], out: Path, shards: int, spec: EmbedderSpec, options: IndexOptions
) -> Summary:
    """Indexes the images ``inputs`` name into ``shards`` shard collections in
    ``out`` on the Ray cluster ``ray.init`` connects to (RAY_ADDRESS)."""
    import ray

    started = time.perf_counter()
    if options.batch_size < 1 or options.commit_size < 1:
        raise ValueError("--batch-size and --commit-size must be at least 1")
    summary = Summary(collections=str(out), shards=shards)
    files, problems = list_inputs_checked(inputs, options.exclude)
    summary.files = len(files)
    summary.errors = [{"path": p, "error": e} for p, e in problems]
    colls = open_shards(out, shards, spec)
    try:
        known: List[Dict[str, Known]] = []
        for c in colls:
            by_path, stale = catalog(c)
            if stale:
                summary.stale_removed += c.delete(stale)
            known.append(by_path)
        todo: List[InputFile] = []
        for f in files:
            k = known[shard_of(f.path, shards)].get(f.path)
            if k is not None and k.size == f.size and k.mtime_ns == f.mtime_ns:
                summary.unchanged += 1
            else:
                todo.append(f)
        writer = ShardWriter(colls, known, options.commit_size)
        pipe_start = time.perf_counter()
        if todo:
            if not ray.is_initialized():
                ray.init(log_to_driver=True)
            resources: Dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
            actors = options.actors or max(1, int(resources.get("CPU", 1)))
            summary.actors = actors
            ds: Any = ray.data.from_items(
                [{"path": f.path} for f in todo],
                override_num_blocks=max(1, min(len(todo) // options.batch_size, 4 * actors * 4)),
            )
            ds = ds.map_batches(read_files, batch_size=options.batch_size, num_cpus=options.read_cpus)
            ds = ds.map_batches(
                EmbedActor,
                fn_constructor_kwargs={"spec": spec, "threads": options.threads_per_actor},
                batch_size=options.batch_size,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=options.cpus_per_actor,
                max_restarts=-1,
                max_task_retries=-1,
            )
            first: Optional[Tuple[float, int]] = None
            # Batches as the actors make them (the writer buffers commits).
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if first is None:
                    first = (time.perf_counter(), len(batch["path"]))
                    summary.first_result_seconds = first[0] - pipe_start
                for i in range(len(batch["path"])):
                    path, kind = str(batch["path"][i]), str(batch["kind"][i])
                    if kind == OK:
                        meta = {
                            "size": int(batch["size"][i]),
                            "mtime_ns": int(batch["mtime_ns"][i]),
                            "blake3": str(batch["blake3"][i]),
                            "format": str(batch["format"][i]),
                        }
                        writer.add(path, np.asarray(batch["vector"][i], dtype=np.float32), meta)
                    elif kind == NOT_IMAGE:
                        summary.not_images += 1
                    else:
                        summary.errors.append({"path": path, "error": str(batch["error"][i])})
            writer.flush()
            summary.errors.extend(writer.failures)
            if first is not None and writer.indexed > first[1]:
                # Once the first results arrived: Ray's start-up (worker
                # processes, actors, model loads) left out.
                summary.steady_images_per_s = (writer.indexed - first[1]) / (time.perf_counter() - first[0])
        summary.pipeline_seconds = time.perf_counter() - pipe_start
        summary.indexed, summary.replaced, summary.repeated_rows = writer.indexed, writer.replaced, writer.repeated
        summary.failed = len(summary.errors)
        summary.per_shard = [{"name": shard_name(i), "path": str(c.path), "count": len(c)} for i, c in enumerate(colls)]
    finally:
        for c in colls:
            c.close()
    summary.seconds = time.perf_counter() - started
    summary.images_per_s = summary.indexed / summary.pipeline_seconds if summary.pipeline_seconds > 0 else 0.0
    return summary


def list_inputs_checked(inputs: Sequence[str], exclude: Sequence[str]) -> Tuple[List[InputFile], List[Tuple[str, str]]]:
    """:func:`list_inputs`, refusing a run that names nothing at all."""
    from .shards import list_inputs

    files, problems = list_inputs(inputs, exclude)
    if not files and problems and len(problems) == len(inputs):
        raise FileNotFoundError("; ".join(f"{p}: {e}" for p, e in problems))
    return files, problems


def print_summary(s: Summary, as_json: bool) -> None:
    """The end of a run, as ``imgsim index`` words it (or JSON)."""
    if as_json:
        print(json.dumps(s.as_json(), indent=2))
        return
    print(
        f"indexed {s.indexed} ({s.replaced} replaced), {s.unchanged} unchanged, {s.failed} failed, "
        f"{s.not_images} not images; {s.files} files, {s.shards} shards, {s.actors} actors"
    )
    print(f"{s.pipeline_seconds:.1f} s, {s.images_per_s:.2f} images/s; once the first results came "
          f"({s.first_result_seconds:.1f} s: Ray's start-up), {s.steady_images_per_s:.2f} images/s")
    for sh in s.per_shard:
        print(f"  {sh['name']}: {sh['count']} images ({sh['path']})")
    for e in s.errors[:20]:
        print(f"  failed: {e['path']}: {e['error']}")
    if len(s.errors) > 20:
        print(f"  ... and {len(s.errors) - 20} more (see --errors FILE)")
