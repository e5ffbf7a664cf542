"""Type stubs of imgsim's Rust extension (``imgsim._imgsim``)."""

import os
import pathlib
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

NO_ID: int
"""The id padding a row of search results that has fewer than ``k`` hits
(the largest uint64); its distance is ``inf``."""

RECALL_EPSILON: float
"""Distance tolerance of recall with ties: a hit as close as the exact k-th
(within this) counts as found."""

_Path = Union[str, "os.PathLike[str]"]
_Vectors = npt.ArrayLike

class Embedder:
    """Turns images into vectors: a pretrained backbone or a checkpoint
    trained by ``imgsim train autoencoder``. Vectors are bit for bit those
    of ``imgsim embed`` with the same arguments."""

    def __init__(
        self, backbone: str = "dinov2-small", weights: Optional[str] = None, *, exact_decode: bool = False
    ) -> None:
        """Loads ``backbone`` (see :meth:`backbones`) with ``weights``: a
        ``.safetensors`` file, ``"hf:OWNER/REPO[:FILE]"``, or
        ``"synthetic:SEED"``; None: the backbone's weights on the Hub.
        ``exact_decode``: decode JPEGs at full size unless a call says
        otherwise (``imgsim index --exact-decode``)."""
    @staticmethod
    def autoencoder(path: _Path, *, exact_decode: bool = False) -> "Embedder":
        """Loads a checkpoint of ``imgsim train autoencoder`` (its folder
        or its ``.safetensors``)."""
    @staticmethod
    def backbones() -> List[str]:
        """The backbone names ``Embedder(backbone=...)`` accepts."""
    @property
    def dim(self) -> int:
        """Embedding size."""
    @property
    def metric(self) -> str:
        """``"cosine"`` or ``"l2"``: how its vectors are compared."""
    @property
    def name(self) -> str:
        """The architecture's name."""
    @property
    def identity(self) -> Dict[str, Any]:
        """Architecture, weights digest and origin, dim, metric, preprocessing."""
    @property
    def exact_decode(self) -> bool:
        """Whether JPEGs are decoded at full size by default."""
    def embed_files(
        self,
        paths: Sequence[_Path],
        *,
        batch_size: int = 16,
        exact_decode: Optional[bool] = None,
    ) -> npt.NDArray[np.float32]:
        """Vectors of image files, float32 ``(len(paths), dim)``. Raises the
        error of the first file that fails."""
    def embed_bytes(
        self,
        images: Sequence[bytes],
        *,
        batch_size: int = 16,
        exact_decode: Optional[bool] = None,
    ) -> npt.NDArray[np.float32]:
        """Vectors of encoded images (file contents), float32
        ``(len(images), dim)``."""
    def embed_texts(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of texts in the image space (CLIP only), float32
        ``(len(texts), dim)``."""

class Collection:
    """A persistent collection of vectors: HNSW graphs and metadata on
    disk, searched approximately or exactly. One process at a time; the
    GIL is released while it works."""

    @staticmethod
    def open(
        path: _Path,
        *,
        cache_bytes: Optional[int] = None,
        seal_threshold: Optional[int] = None,
        compact_tombstone_share: Optional[float] = None,
        max_segments: Optional[int] = None,
    ) -> "Collection":
        """Opens the collection in folder ``path``."""
    @staticmethod
    def create(
        path: _Path,
        dim: Optional[int] = None,
        metric: Optional[str] = None,
        *,
        embedder: Optional[Embedder] = None,
        m: Optional[int] = None,
        ef_construction: Optional[int] = None,
        ef_search: Optional[int] = None,
        builder: Optional[str] = None,
        quantization: Optional[str] = None,
        cache_bytes: Optional[int] = None,
        seal_threshold: Optional[int] = None,
        compact_tombstone_share: Optional[float] = None,
        max_segments: Optional[int] = None,
    ) -> "Collection":
        """Creates an empty collection of ``dim``-dimensional vectors
        (``metric`` cosine by default), or, with ``embedder``, one for that
        embedder's vectors that records it as ``imgsim index`` does."""
    def close(self) -> None:
        """Releases the collection (files and lock)."""
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "Collection": ...
    def __exit__(self, *args: object) -> bool: ...
    def __len__(self) -> int: ...
    def len(self) -> int:
        """Number of live items."""
    @property
    def path(self) -> pathlib.Path:
        """The collection's folder (a pathlib.Path)."""
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def ef_search(self) -> int:
        """The default ef of :meth:`search`."""
    def stats(self) -> Dict[str, Any]:
        """Figures about the collection, as ``imgsim info`` reports them."""
    def add(
        self,
        vectors: _Vectors,
        external_ids: Optional[Iterable[Any]] = None,
        metadata: Optional[Iterable[Optional[Dict[str, Any]]]] = None,
        *,
        source: Optional[str] = None,
    ) -> npt.NDArray[np.uint64]:
        """Adds vectors (rows); returns their new ids. All or nothing."""
    def search(
        self,
        vectors: _Vectors,
        k: int = 10,
        ef: Optional[int] = None,
        exact: bool = False,
    ) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """``(ids, distances)``, each ``(n, k)``, nearest first, padded with
        :data:`NO_ID` and ``inf``."""
    def recall(
        self,
        vectors: _Vectors,
        k: int = 10,
        ef: Optional[int] = None,
        *,
        ties: bool = True,
    ) -> npt.NDArray[np.float64]:
        """Recall@k of :meth:`search` against exact search, per query."""
    def delete(self, ids: Sequence[int]) -> int:
        """Deletes items; returns how many existed."""
    def compact(self) -> None:
        """Rebuilds every live item into one graph."""
    def seal(self) -> None:
        """Builds the appendable segment's graph now."""
    def ids(self) -> npt.NDArray[np.uint64]:
        """Live ids, ascending."""
    def vector(self, id: int) -> npt.NDArray[np.float32]:
        """The stored vector of item ``id``."""
    def item(self, id: int) -> Dict[str, Any]:
        """The metadata of item ``id``."""
    def embedder(self) -> Embedder:
        """The embedder the collection records (``imgsim index``, or
        :meth:`create` with ``embedder``); raises :class:`Error` when it
        records none."""
