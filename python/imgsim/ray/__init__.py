"""imgsim on Ray: distributed indexing into shard collections (Ray Data) and sharded search (Ray Serve).

``python -m imgsim.ray index`` and ``python -m imgsim.ray serve``; see
docs/PYTHON.md ("On a Ray cluster") and docs/SCALE.md. Needs Ray
(``pip install "ray[data,serve]" blake3 python-multipart``), imported only
when a job runs, so ``import imgsim`` never needs it.
"""

from .shards import (
    SHARD_ID_BITS,
    EmbedderSpec,
    global_id,
    shard_name,
    shard_of,
    split_global_id,
)

__all__ = ["SHARD_ID_BITS", "EmbedderSpec", "global_id", "shard_name", "shard_of", "split_global_id"]
