"""Counting the requests a client sends to S3, at the server: moto_server's own request recorder.

``start_counting_s3(log_dir)`` starts a moto_server (as tests/servers.py does) whose recorder
appends every request it receives to a file; ``RequestLog.measure()`` resets it, records what
happens inside the ``with`` block, and classifies each request by what S3 bills it as (PUT,
COPY, GET, ranged GET, HEAD, LIST, DELETE, POST...) and by the part of the repository it
touched (objects/pack, journal, evals...). Counting at the server sees every HTTP request a
client library sends (its retries, existence checks, listings), whatever code path sent it.

Used by tools/bench_requests.py and by the request-count regression tests.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import servers

# S3 Standard list prices (us-east-1), dollars per 1,000 requests. DELETE is free; everything
# not in the first tier (GET, HEAD, ...) is billed at the second.
PRICE_TIER1 = 0.005  # PUT, COPY, POST, LIST
PRICE_TIER2 = 0.0004  # GET, HEAD and all other requests
TIER1 = {"PUT", "COPY", "POST", "LIST"}
FREE = {"DELETE"}
KINDS = ("PUT", "COPY", "POST", "LIST", "GET", "GET-range", "HEAD", "DELETE", "OTHER")


def price_per_request(kind: str) -> float:
    if kind in FREE:
        return 0.0
    return (PRICE_TIER1 if kind in TIER1 else PRICE_TIER2) / 1000


def start_counting_s3(log_dir: Path) -> tuple[servers.ServerProcess, RequestLog]:
    """A moto_server with its recorder writing to a file in ``log_dir`` (off until measured)."""
    path = Path(log_dir) / f"moto-requests-{os.getpid()}-{id(log_dir)}.jsonl"
    path.write_text("")
    before = os.environ.get("MOTO_RECORDER_FILEPATH")
    os.environ["MOTO_RECORDER_FILEPATH"] = str(path)
    try:
        server = servers.start_s3(Path(log_dir))
    finally:
        if before is None:
            del os.environ["MOTO_RECORDER_FILEPATH"]
        else:
            os.environ["MOTO_RECORDER_FILEPATH"] = before
    return server, RequestLog(server.endpoint, path)


def classify(method: str, url: str, headers: dict) -> tuple[str, str]:
    """(billing kind, what it touched) of one recorded request."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    path = urllib.parse.unquote(parts.path).lstrip("/")
    bucket, _, key = path.partition("/")
    lower = {k.lower(): v for k, v in headers.items()}
    if method == "HEAD":
        kind = "HEAD"
    elif method == "GET":
        if not key:
            kind = "LIST" if not (set(query) - {"list-type", "prefix", "delimiter", "max-keys",
                                                "continuation-token", "start-after", "encoding-type",
                                                "fetch-owner"}) else "OTHER"
            key = query.get("prefix", [""])[0]
        else:
            kind = "GET-range" if "range" in lower else "GET"
    elif method == "PUT":
        kind = "COPY" if "x-amz-copy-source" in lower else "PUT"
    elif method == "POST":
        kind = "DELETE" if "delete" in query else "POST"
    elif method == "DELETE":
        kind = "DELETE"
    else:
        kind = "OTHER"
    return kind, _area(key)


def _area(key: str) -> str:
    """The part of a repository a key belongs to: its first component below the repository
    root (``objects/pack`` and loose ``objects`` apart)."""
    bits = key.split("/")
    for i, bit in enumerate(bits):
        if bit == "objects":
            return "objects/pack" if i + 1 < len(bits) and bits[i + 1] == "pack" else "objects"
        if bit in ("journal", "evals", "refs", "objstore.json", "values"):
            return bit
    return "(other)"


@dataclass
class Counts:
    """What one measured block sent."""

    by_kind: Counter = field(default_factory=Counter)
    by_area: Counter = field(default_factory=Counter)
    by_kind_area: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def dollars(self) -> float:
        return sum(n * price_per_request(kind) for kind, n in self.by_kind.items())

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.by_kind + other.by_kind, self.by_area + other.by_area, self.by_kind_area + other.by_kind_area)


class RequestLog:
    def __init__(self, endpoint: str, path: Path):
        self.endpoint = endpoint
        self.path = path
        self.last = Counts()

    def _call(self, action: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=30):
            pass

    @contextmanager
    def measure(self) -> Iterator[Counts]:
        """Count the requests sent inside the block; the Counts are filled in at its end."""
        counts = Counts()
        self._call("reset-recording")
        self._call("start-recording")
        try:
            yield counts
        finally:
            self._call("stop-recording")
            for entry in self._entries():
                kind, area = classify(entry["method"], entry["url"], entry.get("headers") or {})
                counts.by_kind[kind] += 1
                counts.by_area[area] += 1
                counts.by_kind_area[(kind, area)] += 1
            self.last = counts

    def _entries(self) -> Iterator[dict]:
        # Threads of the server append concurrently: a big entry and the newline after it may be
        # written by two calls, so read a stream of JSON documents rather than trusting lines.
        text = self.path.read_text()
        decoder = json.JSONDecoder()
        at = 0
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            if at >= len(text):
                return
            entry, at = decoder.raw_decode(text, at)
            yield entry


__all__ = ["Counts", "KINDS", "PRICE_TIER1", "PRICE_TIER2", "RequestLog", "classify", "price_per_request",
           "start_counting_s3"]
