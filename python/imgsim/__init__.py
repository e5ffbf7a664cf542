"""imgsim: image similarity search from Python.

Embed images with a pretrained backbone or a trained checkpoint
(:class:`Embedder`), keep the vectors in a persistent HNSW collection on
disk (:class:`Collection`), search it approximately or exactly, and measure
recall against exact search. numpy arrays in and out; the GIL is released
while imgsim works. See docs/PYTHON.md.
"""

from ._errors import (
    ConflictError,
    CorruptError,
    Error,
    InternalError,
    InvalidError,
    LockedError,
    NotFoundError,
    PermissionDeniedError,
    StorageFullError,
    TooLargeError,
    UnprocessableError,
    UnsupportedError,
)
from ._imgsim import NO_ID, RECALL_EPSILON, Collection, Embedder, __version__

__all__ = [
    "Collection",
    "Embedder",
    "NO_ID",
    "RECALL_EPSILON",
    "Error",
    "InvalidError",
    "NotFoundError",
    "ConflictError",
    "UnsupportedError",
    "UnprocessableError",
    "TooLargeError",
    "LockedError",
    "PermissionDeniedError",
    "StorageFullError",
    "CorruptError",
    "InternalError",
    "__version__",
]
