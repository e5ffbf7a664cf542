"""The command line of imgsim.ray: ``python -m imgsim.ray index|serve|stop ...``.

Both connect to the Ray cluster RAY_ADDRESS names (``ray start`` made it;
``tools/ray/cluster.sh`` makes one on this machine). Exit statuses: 0 done,
2 bad usage, 3 some files failed (indexing carried on, as ``imgsim index``
does), 1 any other failure (its message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .shards import MAX_SHARDS, EmbedderSpec


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m imgsim.ray",
        description="imgsim on a Ray cluster: distributed indexing into shard collections, sharded search.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser(
        "index",
        help="embed image files on Ray Data and write N shard collections",
        description=(
            "Reads the image files INPUT names with Ray Data, embeds them on a pool of actors (one model "
            "load each) and writes them into N shard collections in OUT (shard-00 ...), each a normal imgsim "
            "collection. Incremental: a re-run embeds only new and changed files. Failed files are listed, "
            "not fatal (exit status 3)."
        ),
    )
    ix.add_argument("--input", action="append", required=True, metavar="DIR_OR_GLOB",
                    help="a folder (searched recursively), a file or a glob ('photos/**/*.jpg'); repeatable")
    ix.add_argument("--collections", required=True, type=Path, metavar="OUT",
                    help="folder of the shard collections (created if missing)")
    ix.add_argument("--shards", required=True, type=int, metavar="N", help=f"number of shards (1 to {MAX_SHARDS})")
    ix.add_argument("--backbone", help="pretrained backbone (imgsim models lists them)")
    ix.add_argument("--weights", help="its weights: a .safetensors file, hf:OWNER/REPO[:FILE] or synthetic:SEED")
    ix.add_argument("--autoencoder", help="or: a checkpoint of imgsim train autoencoder")
    ix.add_argument("--exact-decode", action="store_true", help="decode JPEGs at full size (when the shards are created)")
    ix.add_argument("--batch-size", type=int, default=16, help="images per model call (default 16, as imgsim index)")
    ix.add_argument("--actors", type=int, help="embedding actors (default: one per cluster CPU)")
    ix.add_argument("--cpus-per-actor", type=float, default=0.75, help="Ray CPUs each actor reserves (default 0.75)")
    ix.add_argument("--threads-per-actor", type=int, default=1, help="imgsim threads in each actor (default 1)")
    ix.add_argument("--read-cpus", type=float, default=0.25, help="Ray CPUs each read task reserves (default 0.25)")
    ix.add_argument("--commit-size", type=int, default=256, help="rows per shard commit (default 256)")
    ix.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave out matching paths; repeatable")
    ix.add_argument("--errors", type=Path, metavar="FILE", help="write the files that failed, with the reason, as JSON")
    ix.add_argument("--json", action="store_true", help="print the summary as JSON")

    sv = sub.add_parser(
        "serve",
        help="serve shard collections on Ray Serve, with imgsim serve's search API",
        description=(
            "Deploys one Ray Serve deployment per shard of OUT (each replica searches its own copy of the shard) "
            "and an ingress that fans every search out to all shards and merges the top k, answering imgsim "
            "serve's search API (POST /collections/NAME/search and /search/batch) on 127.0.0.1."
        ),
    )
    sv.add_argument("--collections", required=True, type=Path, metavar="OUT", help="folder of the shard collections")
    sv.add_argument("--name", help="the collection name in URLs (default: OUT's folder name)")
    sv.add_argument("--replicas", type=int, default=2, help="replicas per shard (default 2)")
    sv.add_argument("--replica-cpus", type=float, default=0.1, help="Ray CPUs per shard replica (default 0.1)")
    sv.add_argument("--host", default="127.0.0.1", help="address the HTTP proxy binds (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    sv.add_argument("--replica-dir", type=Path, help="where replicas copy their shard (default: a temporary folder)")
    sv.add_argument("--shard-timeout", type=float, default=5.0,
                    help="seconds a shard may take before the answer names it missing (default 5)")
    sv.add_argument("--detach", action="store_true", help="deploy and return, leaving the service running")

    sub.add_parser("stop", help="stop the sharded service (Ray Serve) a serve --detach left running")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "index":
            from .index import IndexOptions, print_summary, run_index

            spec = EmbedderSpec(args.backbone, args.weights, args.autoencoder, args.exact_decode)
            opts = IndexOptions(
                batch_size=args.batch_size, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                threads_per_actor=args.threads_per_actor, read_cpus=args.read_cpus,
                commit_size=args.commit_size, exclude=args.exclude,
            )
            summary = run_index(args.input, args.collections, args.shards, spec, opts)
            if args.errors is not None:
                args.errors.write_text(json.dumps(summary.errors, indent=2) + "\n")
            print_summary(summary, args.json)
            return 3 if summary.failed else 0
        if args.command == "stop":
            from ray import serve

            serve.shutdown()  # type: ignore[no-untyped-call]
            return 0
        from .serve import ServeOptions, run_serve

        run_serve(ServeOptions(
            collections=args.collections, name=args.name, replicas=args.replicas,
            replica_cpus=args.replica_cpus, host=args.host, port=args.port,
            replica_dir=args.replica_dir, shard_timeout_s=args.shard_timeout, detach=args.detach,
        ))
        return 0
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # every other failure: its message, exit 1
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
