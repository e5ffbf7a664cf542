"""Shards of a sharded imgsim collection: naming, the stable path hash, global ids, input listing and creation.

A sharded collection is a folder (``--collections OUT``) holding N normal
imgsim collections, ``shard-00`` ... ``shard-NN``, each one that ``imgsim
query --data-dir OUT --collection shard-03`` or ``imgsim serve --data-dir
OUT`` opens. An image goes to the shard its absolute path hashes to
(blake2b, so every process and Python version agrees), and the sharded
service names an item by a global id, ``shard << 40 | the shard's own id``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import imgsim

#: Bits of a global id that hold the shard's own id (the shard index is
#: above them): 2**40 items per shard, 2**13 shards within JSON's exact
#: integers (2**53).
SHARD_ID_BITS = 40
#: Most shards a sharded collection may have.
MAX_SHARDS = 1 << 13
#: The ``source`` imgsim index records for a file (``SOURCE_FILE``).
SOURCE_FILE = "file"

_LOCAL_ID_MASK = (1 << SHARD_ID_BITS) - 1


def shard_name(index: int) -> str:
    """The collection name of shard ``index``: ``shard-00``, ``shard-01``, ..."""
    return f"shard-{index:02d}"


def shard_of(path: str, shards: int) -> int:
    """The shard an image path belongs to: a stable hash of its UTF-8 bytes."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, not {shards}")
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def global_id(shard: int, local_id: int) -> int:
    """The id the sharded service gives item ``local_id`` of ``shard``."""
    if local_id > _LOCAL_ID_MASK:
        raise ValueError(f"id {local_id} of shard {shard} does not fit in {SHARD_ID_BITS} bits")
    return (shard << SHARD_ID_BITS) | local_id


def split_global_id(gid: int) -> Tuple[int, int]:
    """``(shard, local id)`` of a global id."""
    if gid < 0:
        raise ValueError(f"ids are not negative: {gid}")
    return gid >> SHARD_ID_BITS, gid & _LOCAL_ID_MASK


def shard_dirs(out: Path) -> List[Path]:
    """The shard collections in ``out``, in shard order; checks that they are
    ``shard-00`` to ``shard-(N-1)`` with none missing."""
    if not out.is_dir():
        raise FileNotFoundError(f"no sharded collection at {out} (not a folder)")
    found = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("shard-"))
    names = [p.name for p in found]
    expected = [shard_name(i) for i in range(len(found))]
    if not found:
        raise FileNotFoundError(f"no shard collections (shard-00, ...) in {out}")
    if names != expected:
        raise ValueError(f"the shards in {out} are {names}; expected {expected}")
    return found


# ---------------------------------------------------------------- input files


@dataclasses.dataclass(frozen=True)
class InputFile:
    """A file to index: its absolute path, size and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int


def _hidden(name: str) -> bool:
    # What imgsim index leaves out unless --hidden: dot files, NAS metadata.
    return name.startswith(".") or name == "@eaDir"


def list_inputs(specs: Sequence[str], exclude: Sequence[str] = ()) -> Tuple[List[InputFile], List[Tuple[str, str]]]:
    """The files named by ``specs`` (folders, searched recursively, files, or
    globs with ``*``, ``?``, ``[`` and ``**``), sorted by path, each once,
    hidden names left out as ``imgsim index`` does; and ``(path, reason)`` of
    what could not be read. ``exclude`` globs match the path or a name."""
    seen: Dict[str, InputFile] = {}
    problems: List[Tuple[str, str]] = []

    def excluded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(os.path.basename(path), g) for g in exclude)

    def add(path: str) -> None:
        path = os.path.abspath(path)
        if path in seen or excluded(path):
            return
        try:
            st = os.stat(path)
        except OSError as e:
            problems.append((path, f"cannot read: {e.strerror or e}"))
            return
        if os.path.isfile(path):
            seen[path] = InputFile(path, st.st_size, st.st_mtime_ns)

    def walk(root: str) -> None:
        def onerror(e: OSError) -> None:
            problems.append((str(e.filename), f"cannot read: {e.strerror or e}"))

        for folder, dirs, files in os.walk(root, onerror=onerror):
            dirs[:] = sorted(d for d in dirs if not _hidden(d) and not excluded(os.path.join(folder, d)))
            for f in files:
                if not _hidden(f):
                    add(os.path.join(folder, f))

    for spec in specs:
        if any(c in spec for c in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append((spec, "the glob matches no file"))
            for m in matches:
                walk(m) if os.path.isdir(m) else add(m)
        elif os.path.isdir(spec):
            walk(os.path.abspath(spec))
        elif os.path.exists(spec):
            add(spec)
        else:
            problems.append((os.path.abspath(spec), "no such file or folder"))
    return sorted(seen.values(), key=lambda f: f.path), problems


def sniff(head: bytes) -> Optional[str]:
    """The image format imgsim's ``sniff`` would name for a file starting with
    ``head`` (its first bytes), or None when it is not an image: the names
    ``imgsim index`` records (``jpeg``, ``png``, ...). A DNG is a TIFF to
    this look at the header; the decoder tells them apart."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jxl"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "heif"
    return None


# ---------------------------------------------------------------- shard collections


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """The embedder a sharded collection is indexed with, as ``imgsim index``
    takes it: a backbone and its weights, or an autoencoder checkpoint."""

    backbone: Optional[str] = None
    weights: Optional[str] = None
    autoencoder: Optional[str] = None
    exact_decode: bool = False

    def __post_init__(self) -> None:
        if (self.backbone is None) == (self.autoencoder is None):
            raise ValueError("name exactly one embedder: --backbone (with --weights) or --autoencoder")

    def load(self) -> imgsim.Embedder:
        """Loads it (one model load)."""
        if self.autoencoder is not None:
            return imgsim.Embedder.autoencoder(self.autoencoder, exact_decode=self.exact_decode)
        assert self.backbone is not None
        return imgsim.Embedder(self.backbone, self.weights, exact_decode=self.exact_decode)


def create_shard(out: Path, index: int, embedder: imgsim.Embedder) -> Path:
    """Creates shard ``index`` in ``out``: an empty collection that records
    ``embedder`` as ``imgsim index`` records a collection's embedder (what
    makes ``imgsim query --image`` and ``imgsim serve`` able to embed
    queries for it)."""
    path = out / shard_name(index)
    imgsim.Collection.create(path, embedder=embedder).close()
    return path


@dataclasses.dataclass
class Known:
    """An indexed file as its shard records it."""

    id: int
    size: int
    mtime_ns: int


def catalog(collection: imgsim.Collection) -> Tuple[Dict[str, Known], List[int]]:
    """The files a shard holds (path -> what it recorded), as ``imgsim
    index``'s catalog reads them, and the ids of stale entries (a path held
    twice: the newest wins)."""
    by_path: Dict[str, Known] = {}
    stale: List[int] = []
    for raw in collection.ids():
        item = collection.item(int(raw))
        if item["source"] != SOURCE_FILE:
            continue
        attrs = item["attrs"]
        known = Known(int(raw), int(attrs.get("size", 0)), int(attrs.get("mtime_ns", 0)))
        old = by_path.get(item["external_id"])
        if old is not None:
            stale.append(old.id)
        by_path[item["external_id"]] = known
    return by_path, stale


def iter_items(collection: imgsim.Collection) -> Iterator[Tuple[int, str]]:
    """``(id, path)`` of every item of a shard, by ascending id."""
    for raw in collection.ids():
        yield int(raw), str(collection.item(int(raw))["external_id"])
