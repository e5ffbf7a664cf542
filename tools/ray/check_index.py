"""Checks the distributed indexing job against imgsim index: bit-identical vectors, one shard per image, incremental re-runs, failures reported, throughput ratio; or survives a raylet killed mid-run.

Runs inside tools/ray/cluster.sh (RAY_ADDRESS set, two nodes):

    bash tools/ray/cluster.sh -- python tools/ray/check_index.py --count 400 --min-ratio 0.8
    bash tools/ray/cluster.sh -- python tools/ray/check_index.py --count 400 --kill-raylet

It copies COUNT photos into a work folder with a damaged JPEG and a text
file, indexes them with ``imgsim index`` (IMGSIM_BIN, one process, all
cores) and with ``python -m imgsim.ray index`` (4 shards), and checks every
image is in exactly one shard once with the vector ``imgsim index`` stored,
bit for bit. Without --kill-raylet it then re-runs the job (nothing to
embed), changes two photos (both re-embedded, their old entries replaced) and
checks again, and prints the throughput of both and their ratios: end to
end (images over each command's wall time) and while embedding (imgsim
index's pipeline rate against the job's rate once its first results came,
Ray's start-up left out; --min-ratio applies to this one). With --kill-raylet the second node's
raylet is killed (SIGKILL) once KILL_AFTER images are done (Ray Data's
progress, logged every second) and its embedding actor runs a batch; the
job must still finish with every image in exactly one shard, once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_PHOTOS,
    EMBEDDER,
    check_shards,
    imgsim_index,
    last_json,
    log,
    make_inputs,
    ray_index,
)


def raylet_pid(node_manager_port: int) -> int:
    """The pid of the raylet listening on ``node_manager_port`` (this PID
    namespace's processes only)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"raylet") and f"--node_manager_port={node_manager_port}".encode() in argv:
            return int(entry)
    sys.exit(f"no raylet with --node_manager_port={node_manager_port}")


def embedding_on(raylet: int) -> bool:
    """Whether a worker of this raylet runs an embedding batch (its process
    title is ``ray::MapWorker(MapBatches(EmbedActor)).submit`` then)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{raylet}\n" in status and title.startswith(b"ray::MapWorker(MapBatches(EmbedActor)).submit"):
            return True
    return False


def kill_run(folder: Path, out: Path, shards: int, kill_after: int) -> Dict[str, object]:
    """Runs the job, killing the second node's raylet once ``kill_after``
    images have been embedded; its JSON summary."""
    port = int(os.environ["IMGSIM_RAY_NODE2_PORT"])
    pid = raylet_pid(port)
    cmd = [sys.executable, "-m", "imgsim.ray", "index", "--input", str(folder), "--collections", str(out),
           "--shards", str(shards), "--json", *EMBEDDER]
    # Ray Data logs progress every second, not every 10, without a terminal.
    env = {**os.environ, "RAY_DATA_NON_TTY_PROGRESS_LOG_INTERVAL": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed: List[float] = []
    started = time.perf_counter()
    tail: List[str] = []
    embedded = [0]

    def read_progress() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            del tail[:-200]
            m = re.search(r"MapBatches\(EmbedActor\): (\d+)/", line)
            if m:
                embedded[0] = int(m.group(1))

    def watch() -> None:
        # Kill once KILL_AFTER images are done and an embedding actor of the
        # second node is running a batch (its process title says so).
        while proc.poll() is None and not killed:
            if embedded[0] >= kill_after and embedding_on(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(time.perf_counter() - started)
                log(f"killed the second node's raylet (pid {pid}) at {killed[0]:.1f} s, while its actor "
                    f"embedded a batch, {embedded[0]} images done by the last progress line")
            time.sleep(0.02)

    threading.Thread(target=read_progress, daemon=True).start()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    rc = proc.wait()
    t.join(timeout=5)
    if rc not in (0, 3):
        sys.stderr.write("".join(tail))
        sys.exit(f"the job exited with {rc} after the raylet was killed")
    if not killed:
        sys.exit(f"the job finished before the second node embedded a batch after {kill_after} images: nothing was killed")
    try:
        os.kill(pid, 0)
        sys.exit(f"raylet {pid} still runs")
    except ProcessLookupError:
        pass
    log(f"the job finished {time.perf_counter() - started:.1f} s after it started, with the raylet dead")
    try:
        return last_json(stdout)
    except ValueError:
        sys.stderr.write("".join(tail[-40:]))
        sys.exit(f"the job (exit status {rc}) printed no JSON summary: {stdout[-2000:]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default=DEFAULT_PHOTOS)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--min-ratio", type=float, default=0.0,
                    help="fail when the job's throughput while embedding / imgsim index's is lower")
    ap.add_argument("--kill-raylet", action="store_true")
    ap.add_argument("--kill-after", type=int, default=64)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="imgsim-ray-check-"))
    try:
        folder, good, damaged = make_inputs(args.photos, args.count, work)
        ref_dir, out = work / "ref-data", work / "sharded"
        log(f"{len(good)} photos, a damaged JPEG and a text file in {folder}")

        if args.kill_raylet:
            ref_wall, ref = imgsim_index(folder, ref_dir)
            log(f"imgsim index: {ref['indexed']} indexed, {ref['failed']} failed in {ref_wall:.2f} s")
            s = kill_run(folder, out, args.shards, args.kill_after)
            log(f"ray index: {s['indexed']} indexed, {s['failed']} failed, {s['repeated_rows']} repeated rows, "
                f"{s['pipeline_seconds']:.1f} s")
            check_shards(out, ref_dir, good)
            return

        # Ray first, then imgsim index: neither gets a warmer page cache.
        ray_wall, s = ray_index(folder, out, args.shards)
        ref_wall, ref = imgsim_index(folder, ref_dir)
        log(f"imgsim index: {ref['indexed']} indexed, {ref['failed']} failed, {ref['not_images']} not images "
            f"({len(ref['not_images'])} listed); wall {ref_wall:.2f} s")  # type: ignore[arg-type]
        log(f"ray index:    {s['indexed']} indexed, {s['failed']} failed, {s['not_images']} not images, "
            f"{s['actors']} actors; wall {ray_wall:.2f} s (pipeline {s['pipeline_seconds']:.2f} s)")
        if s["indexed"] != len(good) or s["failed"] != 1 or s["not_images"] != 1:
            sys.exit(f"expected {len(good)} indexed, 1 failed, 1 not image: {s}")
        errors = s["errors"]
        assert isinstance(errors, list)
        if errors[0]["path"] != damaged:
            sys.exit(f"the failure reported is not the damaged file: {errors}")
        log(f"failure reported: {errors[0]['path']}: {errors[0]['error']}")
        check_shards(out, ref_dir, good)
        ray_rate, ref_rate = len(good) / ray_wall, len(good) / ref_wall
        wall_ratio = ray_rate / ref_rate
        steady, ref_pipe = float(s["steady_images_per_s"]), float(ref["images_per_s"])  # type: ignore[arg-type]
        ratio = steady / ref_pipe
        log(f"THROUGHPUT end to end (each command's wall time, {len(good)} images): imgsim index "
            f"{ref_rate:.1f} images/s, ray index {ray_rate:.1f} images/s: ratio {wall_ratio:.2f}")
        log(f"THROUGHPUT while embedding: imgsim index {ref_pipe:.1f} images/s (its pipeline, after the model "
            f"load), ray index {steady:.1f} images/s (once the first results came, {s['first_result_seconds']:.1f} s "
            f"after the job's pipeline started): ratio {ratio:.2f}")

        # Incremental: nothing new; then one photo changed.
        wall, s2 = ray_index(folder, out, args.shards)
        log(f"re-run: {s2['indexed']} indexed, {s2['unchanged']} unchanged, {s2['failed']} failed; wall {wall:.2f} s")
        if s2["indexed"] != 0 or s2["unchanged"] != len(good):
            sys.exit(f"the re-run embedded again: {s2}")
        # Two photos change (a byte appended after the JPEG's end: new
        # content, same pixels). Two, because imgsim index embeds what
        # changed in one model call, and mobilenetv4-small gives a call of
        # one image other bits than any larger call (the job embeds a lone
        # image in a pair, so that it matches a full index).
        changed = [Path(good[1]), Path(good[2])]
        for c in changed:
            c.write_bytes(c.read_bytes() + b"\0")
            os.utime(c, ns=(time.time_ns(), time.time_ns() + 10**9))
        wall, s3 = ray_index(folder, out, args.shards)
        log(f"after changing {changed[0].name} and {changed[1].name}: {s3['indexed']} indexed, "
            f"{s3['replaced']} replaced, {s3['unchanged']} unchanged; wall {wall:.2f} s")
        if s3["indexed"] != 2 or s3["replaced"] != 2:
            sys.exit(f"expected 2 indexed, 2 replaced: {s3}")
        imgsim_index(folder, ref_dir)
        check_shards(out, ref_dir, good)
        if ratio < args.min_ratio:
            sys.exit(f"throughput ratio while embedding {ratio:.2f} is below {args.min_ratio}")
        log("check_index: all checks passed")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
