#!/usr/bin/env python3
"""How long a watched folder takes to reach the index (standard library only).

    python3 tools/robustness/watch_latency.py --base http://127.0.0.1:PORT \
        --collection NAME --dir DIR [--photos /usr/share/backgrounds] \
        [--count 100] [--timeout 300] [--out report.json]

Against a running `imgsim serve --watch DIR` (DIR empty, or at least free of
the names this script writes): copies --count photos from --photos into DIR
one after the other (each a fresh file: written, closed, its close time
taken), then polls the API until each is listed among the collection's live
items (GET /collections/{c}/images: an item is listed once its vector is
committed, which is when searches find it). Reports the distribution
(min, p50, p90, max) of "listed time minus that file's close time", and the
time from the last close until all are listed. Then deletes the files and
reports the same for their leaving (GET /collections/{c}/images/{id}
answering 404).

There are fewer photos than 100 under /usr/share/backgrounds, and the
collection may already hold them: every copy gets a few distinct bytes
appended after the image data (ignored by decoders), so each is a new
image to decode, embed and thumbnail, never an exact copy of an indexed
one. Only JPEG and PNG files are taken.

Exit status 1 when some file was not listed (or did not leave) within
--timeout seconds, 2 on a setup error.
"""

import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse


class Client:
    """One keep-alive connection; reopened after a connection error."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        if u.scheme != "http":
            raise SystemExit(f"--base must be http://HOST:PORT, not {base}")
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None

    def get(self, path):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                return r.status, body
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")


def photos(root, count):
    """`count` source files (JPEG and PNG under root, sorted), reused round-robin."""
    found = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith((".jpg", ".jpeg", ".png")) and "tuxpaint" not in d.lower():
                found.append(os.path.join(d, n))
    found.sort()
    if not found:
        raise SystemExit(f"no JPEG or PNG under {root}")
    return [found[i % len(found)] for i in range(count)]


def quantiles(values):
    v = sorted(values)
    if not v:
        return {}
    pick = lambda q: v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))]
    return {
        "n": len(v),
        "min_s": round(v[0], 3),
        "p50_s": round(pick(0.5), 3),
        "p90_s": round(pick(0.9), 3),
        "max_s": round(v[-1], 3),
    }


def listed(client, collection):
    """path -> id of the live items with the highest ids (new ones)."""
    c = urllib.parse.quote(collection)
    status, body = client.get(f"/collections/{c}/images?offset=0&limit=1")
    if status != 200:
        raise SystemExit(f"listing failed: {status} {body[:200]!r}")
    total = json.loads(body)["total"]
    out = {}
    offset = max(0, total - 1000)
    while offset < total:
        status, body = client.get(f"/collections/{c}/images?offset={offset}&limit=500")
        if status != 200:
            raise SystemExit(f"listing failed: {status} {body[:200]!r}")
        page = json.loads(body)["images"]
        for img in page:
            out[img["path"]] = img["id"]
        if not page:
            break
        offset += len(page)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--collection", default="default")
    ap.add_argument("--dir", required=True, help="the folder the server watches")
    ap.add_argument("--photos", default="/usr/share/backgrounds")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between polls")
    ap.add_argument("--out")
    a = ap.parse_args()
    if "tuxpaint" in os.path.realpath(a.photos).lower():
        raise SystemExit("the Tux Paint stamps are not photos: use /usr/share/backgrounds")
    client = Client(a.base)
    status, _ = client.get("/readyz")
    if status != 200:
        print(f"the server is not ready ({status})", file=sys.stderr)
        return 2
    watch_dir = os.path.realpath(a.dir)
    sources = photos(a.photos, a.count)
    stamp = int(time.time())
    # Copy in.
    closed = {}
    order = []
    for i, src in enumerate(sources):
        ext = os.path.splitext(src)[1].lower()
        dst = os.path.join(watch_dir, f"watch-latency-{stamp}-{i:03d}{ext}")
        with open(src, "rb") as f:
            data = f.read()
        with open(dst, "wb") as f:
            f.write(data)
            f.write(b"\0imgsim-watch-latency-%d-%d" % (stamp, i))
        closed[dst] = time.time()
        order.append(dst)
    last_close = max(closed.values())
    print(f"copied {len(order)} photos into {watch_dir} in {last_close - closed[order[0]]:.2f} s")
    seen, ids = {}, {}
    deadline = last_close + a.timeout
    while len(seen) < len(order) and time.time() < deadline:
        now_listed = listed(client, a.collection)
        t = time.time()
        for p in order:
            if p not in seen and p in now_listed:
                seen[p] = t
                ids[p] = now_listed[p]
        if len(seen) < len(order):
            time.sleep(a.poll)
    add = quantiles([seen[p] - closed[p] for p in seen])
    add["all_listed_after_last_close_s"] = round(max(seen.values()) - last_close, 3) if len(seen) == len(order) else None
    add["missing"] = len(order) - len(seen)
    print("searchable after close:", json.dumps(add))
    # Delete.
    removed = {}
    for p in order:
        os.remove(p)
        removed[p] = time.time()
    last_remove = max(removed.values())
    left = {}
    deadline = last_remove + a.timeout
    c = urllib.parse.quote(a.collection)
    pending = [p for p in order if p in ids]
    while pending and time.time() < deadline:
        still = []
        for p in pending:
            status, _ = client.get(f"/collections/{c}/images/{ids[p]}")
            if status == 404:
                left[p] = time.time()
            else:
                still.append(p)
        pending = still
        if pending:
            time.sleep(a.poll)
    gone = quantiles([left[p] - removed[p] for p in left])
    gone["all_gone_after_last_delete_s"] = round(max(left.values()) - last_remove, 3) if not pending and left else None
    gone["missing"] = len(pending)
    print("gone from the index after delete:", json.dumps(gone))
    status, body = client.get(f"/collections/{c}/stats")
    watch = json.loads(body).get("watch") if status == 200 else None
    if watch:
        keep = ("indexed", "failed", "removed", "batches", "queued", "notifications", "last_error")
        print("the watcher:", json.dumps({k: watch.get(k) for k in keep}))
    report = {"count": len(order), "watch_dir": watch_dir, "add": add, "delete": gone, "watch": watch}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if add["missing"] or gone["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
