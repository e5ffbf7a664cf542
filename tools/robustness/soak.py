#!/usr/bin/env python3
"""Soak load generator for `imgsim serve` (standard library only).

    python3 tools/robustness/soak.py --base http://127.0.0.1:PORT --collection NAME \
        --api-key KEY --minutes 10 --threads 6 --server-pid PID \
        --query-image FILE [--add-images DIR] --out report.json

Closed-loop mixed traffic from --threads threads over keep-alive
connections; each request's kind is drawn by weight:

  vector  55%  POST /collections/{c}/search {"vector": [...], "k": 10}: the
               query image's embedding (POST /embed, once) plus Gaussian
               noise, from a pool of pre-serialised bodies
  id      20%  POST /collections/{c}/search {"id": N, "k": 10}, N a live id
  image    5%  POST /collections/{c}/search?k=10, the query image's bytes
  add     12%  POST /collections/{c}/images, a new 64x64 PNG every time
               (random colour blocks; 201, or 200 for content already held)
  delete   8%  DELETE /collections/{c}/images/{id}, only ids this script
               added and believes alive (a vector search when there are none)

An id is never searched by id while this script deletes it, so a 404 is an
error, not a race. Search answers are checked: no result may be an id whose
delete was answered 200 before the search was sent.

Errors: any response other than 2xx and 503, and connection errors and
timeouts (counted, then the connection is reopened). 503 (backpressure) is
counted apart. Every 5 s the server's VmRSS is sampled (/proc/PID/status).
A line per minute, a markdown summary at the end, and a JSON report (--out).

After the load: every id added and not deleted answers 200 on GET
/collections/{c}/images/{id} (with the uploaded size), every deleted id
404, search by id for up to 200 surviving added ids answers 200, and the
count in /stats equals the count before + added - deleted (this script must
be the only writer, unless --expect-file-items N: then other writers, such as
`imgsim index` through the server and a watched folder, add file items, and
the script first waits, up to --file-items-timeout, until N new file items
are listed, then counts them in). Outcomes left unknown by a 503 or a connection error on
an add or delete are resolved through the API first (an add that went
through after all shows up as an unexpected upload of the same size).

Exit status 1 on any error, consistency failure, server exit, or RSS growth
after the warm-up (minute 1) above --max-rss-growth-mib; 2 when the setup
(embedding the query image, listing ids) fails.
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from array import array

KINDS = ("vector", "id", "image", "add", "delete")
SEARCH_KINDS = ("vector", "id", "image")
DEFAULT_WEIGHTS = "vector=55,id=20,image=5,add=12,delete=8"
MAX_ERROR_SAMPLES = 50


# ---------------------------------------------------------------- HTTP


class Client:
    """One keep-alive connection; reopened after any connection error."""

    def __init__(self, base, timeout):
        u = urllib.parse.urlsplit(base)
        if u.scheme != "http":
            raise SystemExit(f"--base must be http://HOST:PORT, not {base}")
        self.host = u.hostname
        self.port = u.port or 80
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def request(self, method, path, body=None, headers=None):
        """Returns (status, body bytes, response headers). Raises on connection errors."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, self.prefix + path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
            if r.will_close:
                self.close()
            return r.status, data, r.headers
        except Exception:
            self.close()
            raise

    def request_retry(self, method, path, body=None, headers=None):
        """For idempotent requests outside the load: one retry on a stale connection."""
        try:
            return self.request(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            return self.request(method, path, body, headers)


def image_type(data):
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


# ---------------------------------------------------------------- PNGs


def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def make_png(rng, side=64, block=8):
    """A side x side RGB PNG of random colour blocks (block x block pixels)."""
    n = side // block
    rows = []
    for _ in range(n):
        row = b"".join(bytes((rng.randrange(256), rng.randrange(256), rng.randrange(256))) * block for _ in range(n))
        rows.append((b"\x00" + row) * block)
    raw = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


class IdSet:
    """A set with O(1) add, remove and uniform random choice."""

    def __init__(self):
        self.items = []
        self.index = {}

    def __len__(self):
        return len(self.items)

    def __contains__(self, i):
        return i in self.index

    def add(self, i):
        if i not in self.index:
            self.index[i] = len(self.items)
            self.items.append(i)

    def discard(self, i):
        j = self.index.pop(i, None)
        if j is None:
            return
        last = self.items.pop()
        if last != i:
            self.items[j] = last
            self.index[last] = j

    def choice(self, rng):
        return self.items[rng.randrange(len(self.items))]


# ---------------------------------------------------------------- stats


def pct(sorted_vals, q):
    """Nearest-rank percentile of sorted values (q in 0..100)."""
    if not sorted_vals:
        return None
    i = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def summarise(lat_ms):
    s = sorted(lat_ms)
    return {
        "count": len(s),
        "p50_ms": pct(s, 50),
        "p99_ms": pct(s, 99),
        "max_ms": s[-1] if s else None,
        "mean_ms": statistics.fmean(s) if s else None,
    }


class Bucket:
    """One minute's figures."""

    def __init__(self):
        self.lat = {k: array("d") for k in KINDS}
        self.status = {k: {} for k in KINDS}
        self.errors = {k: 0 for k in KINDS}
        self.busy = {k: 0 for k in KINDS}
        self.conn_errors = {k: 0 for k in KINDS}


def fmt_ms(v):
    return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, a):
        self.a = a
        self.c = urllib.parse.quote(a.collection, safe="")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.buckets = []
        self.t0 = None
        self.t_end = None
        self.error_samples = []
        self.stale_results = 0
        self.rss = []  # (seconds since start, KiB)
        self.rss_error = None
        self.server_gone = False
        # Ids: `pickable` may be searched by id (the initial ids and the
        # added ones not being deleted); `deletable` are the added ones among
        # them; `in_use` counts searches by id in flight per id; `added` maps
        # id -> {sha256, size, file}; `alive` are added ids believed live.
        self.pickable = IdSet()
        self.deletable = IdSet()
        self.in_use = {}
        self.added = {}
        self.alive = set()
        self.deleted = {}  # id -> delete sequence number
        self.delete_seq = 0
        self.uncertain_adds = []  # {sha256, size, status}
        self.uncertain_deletes = set()
        self.duplicate_adds = 0
        self.add_counts = {"201": 0, "200": 0}
        self.delete_fallbacks = 0
        weights = {}
        for part in a.weights.split(","):
            k, _, w = part.partition("=")
            if k.strip() not in KINDS:
                raise SystemExit(f"--weights: unknown kind {k!r} (kinds: {', '.join(KINDS)})")
            weights[k.strip()] = float(w)
        self.kinds = [k for k in KINDS if weights.get(k, 0) > 0]
        self.cum = []
        acc = 0.0
        for k in self.kinds:
            acc += weights[k]
            self.cum.append(acc)
        self.weights = weights

    # -- recording --

    def bucket_for(self, t):
        m = int((t - self.t0) // 60)
        m = max(0, min(m, self.n_minutes - 1))
        return self.buckets[m]

    def record(self, kind, t_start, t_done, status, err_detail=None):
        """status: an int, or None for a connection error/timeout."""
        ms = (t_done - t_start) * 1e3
        with self.lock:
            b = self.bucket_for(t_done)
            b.lat[kind].append(ms)
            key = str(status) if status is not None else "conn_error"
            b.status[kind][key] = b.status[kind].get(key, 0) + 1
            if status is None:
                b.conn_errors[kind] += 1
                b.errors[kind] += 1
            elif status == 503:
                b.busy[kind] += 1
            elif not 200 <= status < 300:
                b.errors[kind] += 1
            if err_detail is not None and len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append(
                    {"t_s": round(t_done - self.t0, 3), "kind": kind, "status": status, "detail": err_detail}
                )

    def note_error(self, kind, detail):
        with self.lock:
            if len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append({"t_s": round(time.monotonic() - self.t0, 3), "kind": kind, "detail": detail})

    # -- setup --

    def setup(self):
        a = self.a
        cl = Client(a.base, a.timeout)
        st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/stats")
        if st != 200:
            raise SystemExit(f"GET /collections/{a.collection}/stats: {st} {body[:300]!r}")
        self.stats_before = json.loads(body)
        self.count_before = self.stats_before["count"]
        ids = []
        offset = 0
        while len(ids) < a.initial_ids:
            st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/images?offset={offset}&limit=500")
            if st != 200:
                raise SystemExit(f"GET /collections/{a.collection}/images: {st} {body[:300]!r}")
            page = json.loads(body)["images"]
            if not page:
                break
            ids.extend(im["id"] for im in page)
            offset += len(page)
        self.initial_ids = ids[: a.initial_ids]
        if not self.initial_ids:
            raise SystemExit(f"collection {a.collection} is empty: nothing to search by id")
        self.known_before = set(ids)
        for i in self.initial_ids:
            self.pickable.add(i)
        with open(a.query_image, "rb") as f:
            self.query_bytes = f.read()
        self.query_type = image_type(self.query_bytes)
        st, body, _ = cl.request_retry(
            "POST",
            f"/embed?collection={urllib.parse.quote(a.collection)}",
            self.query_bytes,
            {"content-type": self.query_type},
        )
        if st != 200:
            raise SystemExit(f"POST /embed: {st} {body[:300]!r}")
        emb = json.loads(body)["embedding"]
        dim = len(emb)
        scale = math.sqrt(sum(x * x for x in emb) / dim) or 1.0
        sigma = a.noise * scale
        rng = random.Random(a.seed)
        self.vector_bodies = []
        for _ in range(a.vector_pool):
            v = [x + rng.gauss(0.0, sigma) for x in emb]
            self.vector_bodies.append(
                ('{"vector":[' + ",".join(f"{x:.6g}" for x in v) + '],"k":%d}' % a.k).encode()
            )
        cl.close()
        print(
            f"collection {a.collection}: {self.count_before} images, dim {dim}, metric {self.stats_before.get('metric')}; "
            f"{len(self.initial_ids)} ids to search by; query image {a.query_image} ({len(self.query_bytes)} bytes); "
            f"{len(self.vector_bodies)} vector bodies (noise sigma {sigma:.4g})",
            flush=True,
        )

    # -- the load --

    def check_results(self, kind, body, seq_at_send):
        """No result may be an id whose delete was confirmed before the search was sent."""
        try:
            res = json.loads(body)["results"]
        except Exception as e:
            self.note_error(kind, f"unparsable search answer: {e}: {body[:200]!r}")
            return False
        for r in res:
            d = self.deleted.get(r["id"])
            if d is not None and d <= seq_at_send:
                with self.lock:
                    self.stale_results += 1
                self.note_error(kind, f"search returned id {r['id']}, deleted before the search was sent")
                return False
        return True

    def worker(self, index):
        a = self.a
        rng = random.Random(a.seed * 1000 + index + 1)
        cl = Client(a.base, a.timeout)
        json_h = {"content-type": "application/json"}
        img_h = {"content-type": self.query_type}
        add_h = {"content-type": "image/png", "api-key": a.api_key}
        del_h = {"api-key": a.api_key}
        search_path = f"/collections/{self.c}/search"
        image_path = f"/collections/{self.c}/search?k={a.k}"
        add_path = f"/collections/{self.c}/images"
        interval = (a.threads / a.rate) if a.rate > 0 else 0.0
        next_at = time.monotonic()
        while not self.stop.is_set():
            if interval:
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, now - 1.0)
            x = rng.random() * self.cum[-1]
            kind = self.kinds[next(i for i, c in enumerate(self.cum) if x < c)]
            held = None
            body = None
            if kind == "id":
                with self.lock:
                    if self.pickable:
                        held = self.pickable.choice(rng)
                        self.in_use[held] = self.in_use.get(held, 0) + 1
                if held is None:
                    kind = "vector"
            elif kind == "delete":
                with self.lock:
                    # One not being searched by id right now (a few tries).
                    for _ in range(min(8, len(self.deletable))):
                        i = self.deletable.choice(rng)
                        if not self.in_use.get(i):
                            held = i
                            self.deletable.discard(i)
                            self.pickable.discard(i)
                            break
                    if held is None:
                        self.delete_fallbacks += 1
                if held is None:
                    kind = "vector"
            elif kind == "add":
                body = make_png(rng)
            seq = self.delete_seq
            t = time.monotonic()
            try:
                if kind == "vector":
                    st, data, _ = cl.request("POST", search_path, rng.choice(self.vector_bodies), json_h)
                elif kind == "id":
                    st, data, _ = cl.request(
                        "POST", search_path, b'{"id":%d,"k":%d}' % (held, a.k), json_h
                    )
                elif kind == "image":
                    st, data, _ = cl.request("POST", image_path, self.query_bytes, img_h)
                elif kind == "add":
                    st, data, _ = cl.request("POST", add_path, body, add_h)
                else:
                    st, data, _ = cl.request("DELETE", f"{add_path}/{held}", None, del_h)
            except Exception as e:
                done = time.monotonic()
                self.record(kind, t, done, None, self.describe(kind, held, f"{type(e).__name__}: {e}"))
                self.after(kind, held, body, None, None)
                time.sleep(0.05)  # not a tight loop against a dead server
                continue
            done = time.monotonic()
            ok = 200 <= st < 300
            detail = None if ok or st == 503 else self.describe(kind, held, data[:300].decode("utf-8", "replace"))
            self.record(kind, t, done, st, detail)
            if ok and kind in ("vector", "id", "image"):
                self.check_results(kind, data, seq)
            self.after(kind, held, body, st, data)
        cl.close()

    @staticmethod
    def describe(kind, held, what):
        """An error's detail, with the id the request was about."""
        if kind == "id":
            return f"search by id {held}: {what}"
        if kind == "delete":
            return f"DELETE id {held}: {what}"
        return what

    def after(self, kind, held, body, st, data):
        """Id bookkeeping after a request (st None: connection error)."""
        if kind == "id":
            with self.lock:
                n = self.in_use.get(held, 1) - 1
                if n:
                    self.in_use[held] = n
                else:
                    self.in_use.pop(held, None)
        elif kind == "delete":
            with self.lock:
                if st == 200:
                    self.alive.discard(held)
                    self.delete_seq += 1
                    self.deleted[held] = self.delete_seq
                elif st in (None, 503):
                    # It may or may not have happened: resolved after the load.
                    self.alive.discard(held)
                    self.uncertain_deletes.add(held)
                else:
                    # Refused (e.g. 404): an error already counted; it is
                    # still believed alive, but not deleted again.
                    pass
        elif kind == "add":
            sha = hashlib.sha256(body).hexdigest()
            if st in (200, 201):
                try:
                    i = json.loads(data)["id"]
                except Exception as e:
                    self.note_error("add", f"unparsable add answer: {e}: {data[:200]!r}")
                    return
                with self.lock:
                    self.add_counts[str(st)] = self.add_counts.get(str(st), 0) + 1
                    if i in self.added or i in self.known_before:
                        self.duplicate_adds += 1
                        self.note_error("add", f"new content answered with existing id {i} (status {st})")
                        return
                    if i in self.deleted:
                        self.note_error("add", f"new content answered with deleted id {i}")
                    f = None
                    if self.a.add_images:
                        f = os.path.join(self.a.add_images, f"{i}-{sha[:16]}.png")
                    self.added[i] = {"sha256": sha, "size": len(body), "file": f}
                    self.alive.add(i)
                    self.pickable.add(i)
                    self.deletable.add(i)
                if f:
                    with open(f, "wb") as fh:
                        fh.write(body)
            elif st in (None, 503):
                with self.lock:
                    self.uncertain_adds.append({"sha256": sha, "size": len(body), "status": st})

    def rss_kib(self):
        """VmRSS in KiB; None when the process is gone (or a zombie)."""
        try:
            with open(f"/proc/{self.a.server_pid}/status") as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        return None
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except FileNotFoundError:
            return None
        except OSError as e:
            self.rss_error = str(e)
        return None

    def server_alive(self):
        try:
            with open(f"/proc/{self.a.server_pid}/status") as f:
                for line in f:
                    if line.startswith("State:"):
                        return line.split()[1] not in ("Z", "X")
        except OSError:
            return False
        return True

    def sample_rss(self):
        if not self.a.server_pid:
            return None
        v = self.rss_kib()
        t = time.monotonic() - self.t0
        if v is None:
            if not self.server_alive():
                if not self.server_gone:
                    self.server_gone = True
                    self.note_error("server", f"server process {self.a.server_pid} is gone at {t:.1f} s")
            return None
        with self.lock:
            self.rss.append((round(t, 2), v))
        return v

    def sampler(self):
        while not self.stop.wait(5.0):
            self.sample_rss()

    def minute_line(self, m):
        b = self.buckets[m]
        lat = sorted(x for k in KINDS for x in b.lat[k])
        secs = self.minute_seconds(m)
        err = sum(b.errors.values())
        busy = sum(b.busy.values())
        rss = self.rss[-1][1] / 1024 if self.rss else None
        rss_s = f"{rss:.0f} MiB" if rss is not None else "n/a"
        return (
            f"minute {m + 1}: {len(lat) / secs:.0f} req/s, p50 {fmt_ms(pct(lat, 50))} ms, "
            f"p99 {fmt_ms(pct(lat, 99))} ms, errors {err}, 503s {busy}, rss {rss_s}"
        )

    def minute_seconds(self, m):
        end = min((m + 1) * 60.0, self.duration)
        return max(end - m * 60.0, 1e-9)

    def run(self):
        a = self.a
        self.duration = a.minutes * 60.0
        self.n_minutes = max(1, math.ceil(self.duration / 60.0 - 1e-9))
        self.buckets = [Bucket() for _ in range(self.n_minutes)]
        if a.add_images:
            os.makedirs(a.add_images, exist_ok=True)
        self.t0 = time.monotonic()
        self.sample_rss()
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(a.threads)]
        sampler = threading.Thread(target=self.sampler, daemon=True)
        for t in threads:
            t.start()
        sampler.start()
        for m in range(self.n_minutes):
            end = self.t0 + min((m + 1) * 60.0, self.duration)
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 1.0))
                if self.server_gone:
                    break
            if m == self.n_minutes - 1 or self.server_gone:
                self.stop.set()
                for t in threads:
                    t.join(a.timeout + 5)
            else:
                time.sleep(0.05)
            self.sample_rss()
            print(self.minute_line(m), flush=True)
            if self.server_gone:
                print(f"server process {a.server_pid} is gone: stopping", flush=True)
                self.stop.set()
                for t in threads:
                    t.join(a.timeout + 5)
                break
        self.t_end = time.monotonic()
        self.stop.set()
        sampler.join(6)
        self.rss_end_sample = self.sample_rss()

    # -- consistency --

    def new_file_items(self, cl):
        """Items made from files (by other writers) that were not there before."""
        out = []
        offset = 0
        while True:
            st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/images?offset={offset}&limit=500")
            if st != 200:
                raise OSError(f"GET images?offset={offset}: {st} {body[:200]!r}")
            page = json.loads(body)["images"]
            if not page:
                return out
            offset += len(page)
            out.extend(im for im in page if im.get("source") == "file" and im["id"] not in self.known_before)

    def verify(self):
        a = self.a
        fails = []
        cl = Client(a.base, a.timeout)

        def fail(msg):
            if len(fails) < 200:
                fails.append(msg)
            else:
                fails.append(None)

        def get_image(i):
            return cl.request_retry("GET", f"/collections/{self.c}/images/{i}")

        # Deletes whose outcome is unknown: whatever the server holds now is
        # consistent, as long as it is one or the other.
        resolved_deleted = resolved_alive = 0
        for i in sorted(self.uncertain_deletes):
            st, body, _ = get_image(i)
            if st == 404:
                self.delete_seq += 1
                self.deleted[i] = self.delete_seq
                resolved_deleted += 1
            elif st == 200:
                self.alive.add(i)
                resolved_alive += 1
            else:
                fail(f"GET image {i} (delete outcome unknown): {st} {body[:200]!r}")
        # File items added by other writers: wait until all are listed.
        file_items = None
        if a.expect_file_items >= 0:
            deadline = time.monotonic() + a.file_items_timeout
            while True:
                file_items = self.new_file_items(cl)
                if len(file_items) >= a.expect_file_items or time.monotonic() > deadline:
                    break
                time.sleep(2)
            if len(file_items) != a.expect_file_items:
                fail(f"{len(file_items)} new file items listed, expected {a.expect_file_items} from the other writers")
            paths = [im.get("path") for im in file_items]
            if len(set(paths)) != len(paths):
                fail(f"{len(paths) - len(set(paths))} file paths stored twice")
        # Adds whose outcome is unknown: uploads that this script does not
        # know of, of the same size, are those adds that went through.
        found_uncertain = 0
        unknown_items = []
        if self.uncertain_adds:
            offset = 0
            while True:
                st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/images?offset={offset}&limit=500")
                if st != 200:
                    fail(f"GET images?offset={offset}: {st} {body[:200]!r}")
                    break
                page = json.loads(body)["images"]
                if not page:
                    break
                offset += len(page)
                for im in page:
                    i = im["id"]
                    if i not in self.known_before and i not in self.added and im.get("source") != "file":
                        unknown_items.append(im)
            sizes = {}
            for u in self.uncertain_adds:
                sizes[u["size"]] = sizes.get(u["size"], 0) + 1
            for im in unknown_items:
                sz = (im.get("attrs") or {}).get("size")
                if im.get("source") == "upload" and sizes.get(sz, 0) > 0:
                    sizes[sz] -= 1
                    found_uncertain += 1
                    self.added[im["id"]] = {"sha256": None, "size": sz, "file": None, "uncertain": True}
                    self.alive.add(im["id"])
                else:
                    fail(f"item {im['id']} appeared that this script did not add: {json.dumps(im)[:200]}")

        survivors = sorted(self.alive)
        deleted = sorted(self.deleted)
        for i in survivors:
            st, body, _ = get_image(i)
            if st != 200:
                fail(f"added id {i} not deleted: GET answered {st} {body[:200]!r}")
                continue
            info = json.loads(body)
            want = self.added[i]["size"]
            got = (info.get("attrs") or {}).get("size")
            if got != want:
                fail(f"added id {i}: size {got} in its metadata, {want} uploaded")
        for i in deleted:
            st, body, _ = get_image(i)
            if st != 404:
                fail(f"deleted id {i}: GET answered {st} (want 404) {body[:200]!r}")
        rng = random.Random(a.seed + 7)
        sample = survivors if len(survivors) <= a.verify_searches else rng.sample(survivors, a.verify_searches)
        dead = set(self.deleted)
        for i in sample:
            st, body, _ = cl.request_retry(
                "POST", f"/collections/{self.c}/search", b'{"id":%d,"k":%d}' % (i, a.k), {"content-type": "application/json"}
            )
            if st != 200:
                fail(f"search by added id {i}: {st} {body[:200]!r}")
                continue
            res = json.loads(body)["results"]
            bad = [r["id"] for r in res if r["id"] in dead or r["id"] == i]
            if bad:
                fail(f"search by added id {i}: results include deleted ids or itself: {bad}")
        st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/stats")
        count_after = None
        expected = self.count_before + len(self.added) - len(self.deleted) + len(file_items or [])
        if st != 200:
            fail(f"GET stats: {st} {body[:200]!r}")
        else:
            count_after = json.loads(body)["count"]
            if count_after != expected:
                fail(
                    f"stats count {count_after}, expected {expected} = {self.count_before} before + "
                    f"{len(self.added)} added - {len(self.deleted)} deleted + {len(file_items or [])} file items"
                )
        st, body, _ = cl.request_retry("GET", f"/collections/{self.c}/images?limit=1")
        list_total = json.loads(body)["total"] if st == 200 else None
        if list_total is not None and count_after is not None and list_total != count_after:
            fail(f"images listing total {list_total} differs from the stats count {count_after}")
        cl.close()
        n_fails = len(fails)
        return {
            "ok": n_fails == 0,
            "failures": n_fails,
            "failure_samples": [f for f in fails if f is not None],
            "count_before": self.count_before,
            "count_after": count_after,
            "count_expected": expected,
            "file_items_added": None if file_items is None else len(file_items),
            "listing_total": list_total,
            "added": len(self.added),
            "deleted": len(self.deleted),
            "survivors_checked": len(survivors),
            "deleted_checked": len(deleted),
            "searches_checked": len(sample),
            "uncertain_deletes": {"n": len(self.uncertain_deletes), "found_deleted": resolved_deleted, "found_alive": resolved_alive},
            "uncertain_adds": {"n": len(self.uncertain_adds), "found_added": found_uncertain},
        }

    # -- report --

    def report(self, consistency):
        a = self.a
        minutes = []
        tot_lat = {k: array("d") for k in KINDS}
        tot_status = {k: {} for k in KINDS}
        tot_err = {k: 0 for k in KINDS}
        tot_busy = {k: 0 for k in KINDS}
        tot_conn = {k: 0 for k in KINDS}
        elapsed = self.t_end - self.t0
        for m, b in enumerate(self.buckets):
            secs = self.minute_seconds(m)
            all_lat = array("d")
            kinds = {}
            for k in KINDS:
                all_lat.extend(b.lat[k])
                tot_lat[k].extend(b.lat[k])
                for s, n in b.status[k].items():
                    tot_status[k][s] = tot_status[k].get(s, 0) + n
                tot_err[k] += b.errors[k]
                tot_busy[k] += b.busy[k]
                tot_conn[k] += b.conn_errors[k]
                if b.lat[k]:
                    d = summarise(b.lat[k])
                    d.update(qps=len(b.lat[k]) / secs, status=b.status[k], errors=b.errors[k], busy_503=b.busy[k])
                    kinds[k] = d
            o = summarise(all_lat)
            search_lat = array("d")
            for k in SEARCH_KINDS:
                search_lat.extend(b.lat[k])
            rss_m = [v for t, v in self.rss if m * 60 <= t <= (m + 1) * 60 + 1]
            minutes.append(
                {
                    "minute": m + 1,
                    "seconds": secs,
                    "requests": len(all_lat),
                    "qps": len(all_lat) / secs,
                    "overall": o,
                    "search": summarise(search_lat),
                    "errors": sum(b.errors.values()),
                    "connection_errors": sum(b.conn_errors.values()),
                    "busy_503": sum(b.busy.values()),
                    "status": {s: sum(b.status[k].get(s, 0) for k in KINDS) for s in {s for k in KINDS for s in b.status[k]}},
                    "rss_mib_last": rss_m[-1] / 1024 if rss_m else None,
                    "kinds": kinds,
                }
            )
        totals_kinds = {}
        all_lat = array("d")
        for k in KINDS:
            all_lat.extend(tot_lat[k])
            if tot_lat[k]:
                d = summarise(tot_lat[k])
                d.update(qps=len(tot_lat[k]) / elapsed, status=tot_status[k], errors=tot_err[k], busy_503=tot_busy[k], connection_errors=tot_conn[k])
                totals_kinds[k] = d
        overall = summarise(all_lat)
        search_all = array("d")
        for k in SEARCH_KINDS:
            search_all.extend(tot_lat[k])
        search = summarise(search_all)
        errors = sum(tot_err.values())
        busy = sum(tot_busy.values())
        # RSS: the warm-up sample is the first at or after --rss-warmup-s
        # (minute 1), clamped to half the run for short runs.
        warm = min(a.rss_warmup_s, elapsed / 2)
        after_warm = next((v for t, v in self.rss if t >= warm), None)
        rss_end = self.rss[-1][1] if self.rss else None
        growth = (rss_end - after_warm) / 1024 if (rss_end is not None and after_warm is not None) else None
        rss = {
            "samples": [{"t_s": t, "rss_mib": round(v / 1024, 2)} for t, v in self.rss],
            "start_mib": self.rss[0][1] / 1024 if self.rss else None,
            "warmup_s": warm,
            "after_warmup_mib": after_warm / 1024 if after_warm is not None else None,
            "end_mib": rss_end / 1024 if rss_end is not None else None,
            "peak_mib": max(v for _, v in self.rss) / 1024 if self.rss else None,
            "growth_mib": growth,
            "max_growth_mib": a.max_rss_growth_mib,
            "net_items_added": len(self.added) - len(self.deleted),
        }
        failures = []
        if errors:
            failures.append(f"{errors} errors (non-2xx other than 503, or connection errors)")
        if self.stale_results:
            failures.append(f"{self.stale_results} search answers listed an id already deleted")
        if self.duplicate_adds:
            failures.append(f"{self.duplicate_adds} adds of new content answered with an id already known")
        if not consistency["ok"]:
            failures.append(f"{consistency['failures']} consistency failures")
        if self.server_gone:
            failures.append(f"the server process {a.server_pid} exited during the soak")
        if a.server_pid and not self.rss:
            failures.append(f"no RSS sample of pid {a.server_pid} ({self.rss_error or 'no such process'})")
        if a.max_search_p99_ms > 0:
            over = [m["minute"] for m in minutes if m["search"]["p99_ms"] is not None and m["search"]["p99_ms"] > a.max_search_p99_ms]
            if over:
                failures.append(f"search p99 over {a.max_search_p99_ms} ms in minute(s) {over}")
        if a.max_search_ms > 0 and search["max_ms"] is not None and search["max_ms"] > a.max_search_ms:
            failures.append(f"worst search latency {search['max_ms']:.1f} ms (limit {a.max_search_ms} ms)")
        if growth is not None and growth > a.max_rss_growth_mib:
            failures.append(f"RSS grew {growth:.1f} MiB after {warm:.0f} s (limit {a.max_rss_growth_mib} MiB)")
        return {
            "config": {
                k: getattr(a, k)
                for k in ("base", "collection", "minutes", "threads", "server_pid", "query_image", "add_images", "weights", "k", "noise", "rate", "seed", "timeout")
            },
            "elapsed_s": elapsed,
            "minutes": minutes,
            "totals": {
                "requests": len(all_lat),
                "qps": len(all_lat) / elapsed,
                "overall": overall,
                "search": search,
                "errors": errors,
                "connection_errors": sum(tot_conn.values()),
                "busy_503": busy,
                "kinds": totals_kinds,
                "adds": {"201": self.add_counts.get("201", 0), "200": self.add_counts.get("200", 0), "uncertain": len(self.uncertain_adds)},
                "deletes_confirmed": len(self.deleted),
                "delete_fallbacks_to_vector": self.delete_fallbacks,
                "stale_results": self.stale_results,
                "duplicate_adds": self.duplicate_adds,
            },
            "rss": rss,
            "consistency": consistency,
            "error_samples": self.error_samples,
            "failures": failures,
            "ok": not failures,
        }


def markdown(rep):
    out = []
    t = rep["totals"]
    out.append(f"\n## Soak: {rep['elapsed_s'] / 60:.1f} min, {rep['config']['threads']} threads, collection `{rep['config']['collection']}`\n")
    out.append("| kind | requests | req/s | p50 ms | p99 ms | max ms | errors | 503s |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k in KINDS:
        d = t["kinds"].get(k)
        if d:
            out.append(
                f"| {k} | {d['count']:,} | {d['qps']:.1f} | {fmt_ms(d['p50_ms'])} | {fmt_ms(d['p99_ms'])} | "
                f"{fmt_ms(d['max_ms'])} | {d['errors']} | {d['busy_503']} |"
            )
    o = t["overall"]
    out.append(
        f"| **all** | {o['count']:,} | {t['qps']:.1f} | {fmt_ms(o['p50_ms'])} | {fmt_ms(o['p99_ms'])} | "
        f"{fmt_ms(o['max_ms'])} | {t['errors']} | {t['busy_503']} |"
    )
    so = t["search"]
    out.append(
        f"| **searches** | {so['count']:,} | {so['count'] / rep['elapsed_s']:.1f} | {fmt_ms(so['p50_ms'])} | {fmt_ms(so['p99_ms'])} | "
        f"{fmt_ms(so['max_ms'])} | | |"
    )
    out.append("\n| minute | req/s | p50 ms | p99 ms | max ms | search p99 ms | search max ms | errors | 503s | RSS MiB |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in rep["minutes"]:
        o = m["overall"]
        sm = m["search"]
        r = m["rss_mib_last"]
        out.append(
            f"| {m['minute']} | {m['qps']:.0f} | {fmt_ms(o['p50_ms'])} | {fmt_ms(o['p99_ms'])} | {fmt_ms(o['max_ms'])} | "
            f"{fmt_ms(sm['p99_ms'])} | {fmt_ms(sm['max_ms'])} | "
            f"{m['errors']} | {m['busy_503']} | {'-' if r is None else f'{r:.0f}'} |"
        )
    r = rep["rss"]

    def mib(v):
        return "n/a" if v is None else f"{v:.1f} MiB"

    out.append(
        f"\nRSS: start {mib(r['start_mib'])}, after {r['warmup_s']:.0f} s {mib(r['after_warmup_mib'])}, end {mib(r['end_mib'])}, "
        f"peak {mib(r['peak_mib'])}; growth {mib(r['growth_mib'])} (limit {r['max_growth_mib']} MiB; "
        f"net {r['net_items_added']:+,} items)"
    )
    c = rep["consistency"]
    out.append(
        f"Adds {c['added']:,} (201: {t['adds']['201']:,}, 200: {t['adds']['200']:,}), deletes {c['deleted']:,}; "
        f"count {c['count_before']:,} -> {c['count_after']} (expected {c['count_expected']:,}"
        + (f", of which {c['file_items_added']:,} file items from other writers" if c.get("file_items_added") is not None else "")
        + "); "
        f"checked {c['survivors_checked']:,} survivors, {c['deleted_checked']:,} deleted, {c['searches_checked']} searches by id: "
        + ("consistent" if c["ok"] else f"{c['failures']} FAILURES")
    )
    st = {}
    for d in t["kinds"].values():
        for s, n in d["status"].items():
            st[s] = st.get(s, 0) + n
    out.append("Status codes: " + ", ".join(f"{s}: {n:,}" for s, n in sorted(st.items())))
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="http://HOST:PORT of imgsim serve")
    p.add_argument("--collection", required=True)
    p.add_argument("--api-key", required=True, help="the server's api key (for adds and deletes)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--server-pid", type=int, default=0, help="pid of imgsim serve, for its RSS (0: none)")
    p.add_argument("--query-image", required=True, help="image to embed for vector queries and to search by upload")
    p.add_argument("--add-images", default=None, metavar="DIR", help="save each uploaded PNG here as ID-SHA256.png (to reproduce a failure)")
    p.add_argument("--out", default=None, help="JSON report")
    p.add_argument("--max-rss-growth-mib", type=float, default=64.0)
    p.add_argument("--rss-warmup-s", type=float, default=60.0, help="RSS growth is measured from the first sample after this (clamped to half the run)")
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help=f"kind=weight,... (default {DEFAULT_WEIGHTS})")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--noise", type=float, default=0.05, help="Gaussian noise sigma, relative to the embedding's RMS component")
    p.add_argument("--vector-pool", type=int, default=200)
    p.add_argument("--initial-ids", type=int, default=500, help="existing ids fetched to search by")
    p.add_argument("--verify-searches", type=int, default=200)
    p.add_argument("--rate", type=float, default=0.0, help="total requests/s to aim at (0: as fast as the threads go)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request socket timeout, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-search-p99-ms", type=float, default=0.0, help="fail when a minute's search p99 exceeds this (0: no limit)")
    p.add_argument("--max-search-ms", type=float, default=0.0, help="fail when any search takes longer (0: no limit)")
    p.add_argument("--expect-file-items", type=int, default=-1, help="other writers add this many file items (-1: none)")
    p.add_argument("--file-items-timeout", type=float, default=600.0, help="seconds to wait for them after the load")
    a = p.parse_args()
    if a.threads < 1 or a.minutes <= 0:
        p.error("--threads must be >= 1 and --minutes > 0")
    s = Soak(a)
    try:
        s.setup()
    except (OSError, http.client.HTTPException, KeyError, ValueError) as e:
        print(f"setup failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        print(f"setup failed: {e}", file=sys.stderr)
        sys.exit(2)
    s.run()
    try:
        consistency = s.verify()
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        consistency = {
            "ok": False, "failures": 1, "failure_samples": [f"verification aborted: {type(e).__name__}: {e}"],
            "count_before": s.count_before, "count_after": None,
            "count_expected": s.count_before + len(s.added) - len(s.deleted), "listing_total": None,
            "added": len(s.added), "deleted": len(s.deleted), "survivors_checked": 0, "deleted_checked": 0,
            "searches_checked": 0, "uncertain_deletes": {}, "uncertain_adds": {},
        }
    rep = s.report(consistency)
    print(markdown(rep), flush=True)
    if rep["error_samples"]:
        print("\nFirst errors:")
        for e in rep["error_samples"][:10]:
            print(f"  {e}")
    if consistency["failure_samples"]:
        print("\nConsistency failures:")
        for f in consistency["failure_samples"][:20]:
            print(f"  {f}")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(rep, f, indent=1)
        print(f"\nreport: {a.out}")
    if rep["failures"]:
        print("\nFAIL: " + "; ".join(rep["failures"]))
        sys.exit(1)
    print("\nOK")


if __name__ == "__main__":
    main()
