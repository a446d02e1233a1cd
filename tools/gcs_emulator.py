#!/usr/bin/env python
"""gcp-storage-emulator with GCS preconditions, for the test suite.

Same command line as ``gcp-storage-emulator`` (``python tools/gcs_emulator.py start
-H 127.0.0.1 --port 9023 --in-memory -q``). The stock emulator ignores
``ifGenerationMatch`` and friends, so any compare-and-swap test against it would pass
vacuously; this wrapper patches its route table so that

* object insert (media, multipart and resumable -- checked again on every chunk, so a
  competing write between initiation and completion is caught), metadata get, media
  download, delete and patch honour ``ifGenerationMatch``, ``ifGenerationNotMatch``,
  ``ifMetagenerationMatch`` and ``ifMetagenerationNotMatch``, answering a GCS-shaped 412
  (``conditionNotMet``), or 304 for a failed *NotMatch* on a read, as GCS does;
* media downloads carry ``x-goog-generation`` / ``x-goog-metageneration`` like GCS's, so
  a client can read an object and the generation it read in one request;
* an empty media upload stores an empty object instead of crashing the handler;
* objects.list honours ``startOffset`` / ``endOffset`` (names >= start, < end), so a client
  that lists from a marker gets the short listing GCS would give;
* generations strictly increase (the emulator uses the wall clock, which may repeat or
  step back, and a repeated generation would make a stale CAS succeed).

The check and the write happen inside one request on the emulator's only request thread
(``http.server.HTTPServer`` is not threading), so check-then-write is atomic.

It also fixes what makes the stock server unusable under load:

* listen backlog 5 -> 1024: a burst of concurrent gcsfs requests overflowed it, and each
  dropped SYN cost a 1 s / 3 s retransmit stall;
* in ``--in-memory`` mode the emulator re-serialised every object's metadata to JSON after
  each write (O(#objects) per write); nothing ever reads it back in memory mode;
* BrokenPipe / ConnectionReset tracebacks (gcsfs ``info()`` races two requests and drops
  the loser) are silenced.
"""

from __future__ import annotations

import http.server
import json
import sys
import time
import types
import urllib.parse
from http import HTTPStatus

from gcp_storage_emulator import server as _server
from gcp_storage_emulator import storage as _storage
from gcp_storage_emulator.__main__ import main as _stock_main
from gcp_storage_emulator.handlers import objects as _objects

_MATCH = ("ifGenerationMatch", "ifMetagenerationMatch")
_NOT_MATCH = ("ifGenerationNotMatch", "ifMetagenerationNotMatch")

# upload_id -> (bucket, name, conditions) of resumable uploads started with preconditions.
_RESUMABLE: dict[str, tuple[str, str, dict[str, int]]] = {}


class _Unmet(Exception):
    def __init__(self, condition: str):
        super().__init__(condition)
        self.condition = condition


def _conditions(query: dict) -> dict[str, int]:
    out = {}
    for key in _MATCH + _NOT_MATCH:
        if key in query:
            out[key] = int(query[key][0])
    return out


def _check(storage, bucket: str, name: str, conds: dict[str, int]) -> None:
    """Raise _Unmet naming the first condition that does not hold.

    A missing object has generation 0 (GCS: ``ifGenerationMatch=0`` = must not exist)
    and fails any metageneration condition.
    """
    obj = storage.objects.get(bucket, {}).get(name)
    generation = int(obj["generation"]) if obj else 0
    metageneration = int(obj["metageneration"]) if obj else None
    for key, want in conds.items():
        have = generation if key.startswith("ifGeneration") else metageneration
        if key in _MATCH and have != want:
            raise _Unmet(key)
        if key in _NOT_MATCH and have == want:
            raise _Unmet(key)


def _refuse(response, err: _Unmet, *, read: bool) -> None:
    if read and err.condition in _NOT_MATCH:
        response.status = HTTPStatus.NOT_MODIFIED
        return
    message = "At least one of the pre-conditions you specified did not hold."
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json(
        {
            "error": {
                "code": 412,
                "message": message,
                "errors": [
                    {
                        "domain": "global",
                        "reason": "conditionNotMet",
                        "message": message,
                        "locationType": "header",
                        "location": "If-Match",
                    }
                ],
            }
        }
    )


def _insert_target(request) -> tuple[str, str | None]:
    bucket = request.params["bucket_name"]
    if "name" in request.query:
        return bucket, request.query["name"][0]
    kind = (request.query.get("uploadType") or [""])[0]
    data = request.data
    if kind == "multipart" and isinstance(data, dict):
        return bucket, (data.get("meta") or {}).get("name")
    if kind == "resumable" and isinstance(data, dict):
        return bucket, data.get("name")
    return bucket, None


def _guard_insert(orig):
    def insert(request, response, storage, *args, **kwargs):
        if "upload_id" in request.query:  # POST used for a resumable chunk
            return _objects.upload_partial(request, response, storage, *args, **kwargs)
        if (request.query.get("uploadType") or [""])[0] == "media" and request.data is None:
            request._data = b""  # the stock handler crashes on an empty object (len(None))
        conds = _conditions(request.query)
        if conds:
            bucket, name = _insert_target(request)
            if name is not None:
                try:
                    _check(storage, bucket, name, conds)
                except _Unmet as err:
                    return _refuse(response, err, read=False)
        result = orig(request, response, storage, *args, **kwargs)
        if conds and name is not None:
            location = response._headers.get("Location")
            if location:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
                for upload_id in query.get("upload_id", []):
                    _RESUMABLE[upload_id] = (bucket, name, conds)
        return result

    return insert


def _guard_upload_partial(orig):
    def upload_partial(request, response, storage, *args, **kwargs):
        upload_id = (request.query.get("upload_id") or [None])[0]
        pending = _RESUMABLE.get(upload_id)
        if pending is not None:
            bucket, name, conds = pending
            try:
                _check(storage, bucket, name, conds)
            except _Unmet as err:
                _RESUMABLE.pop(upload_id, None)
                storage.resumable.pop(upload_id, None)
                return _refuse(response, err, read=False)
        result = orig(request, response, storage, *args, **kwargs)
        if upload_id not in storage.resumable:  # finished (or abandoned): forget it
            _RESUMABLE.pop(upload_id, None)
        return result

    return upload_partial


def _guard_existing(orig, *, read: bool):
    """get / download / delete / patch: a missing object stays the handler's 404."""

    def handler(request, response, storage, *args, **kwargs):
        conds = _conditions(request.query)
        if conds:
            bucket = request.params["bucket_name"]
            name = request.params["object_id"]
            if name in storage.objects.get(bucket, {}):
                try:
                    _check(storage, bucket, name, conds)
                except _Unmet as err:
                    return _refuse(response, err, read=read)
        return orig(request, response, storage, *args, **kwargs)

    return handler


def _with_generation_headers(orig):
    def download(request, response, storage, *args, **kwargs):
        result = orig(request, response, storage, *args, **kwargs)
        if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            obj = storage.objects.get(request.params["bucket_name"], {}).get(request.params["object_id"])
            if obj:
                response["x-goog-generation"] = str(obj["generation"])
                response["x-goog-metageneration"] = str(obj["metageneration"])
        return result

    return download


def _with_offsets(ls):
    def listing(request, response, storage, *args, **kwargs):
        ls(request, response, storage, *args, **kwargs)
        start = (request.query.get("startOffset") or [None])[0]
        end = (request.query.get("endOffset") or [None])[0]
        content = getattr(response, "_content", None)
        if (start or end) and content:
            doc = json.loads(content)

            def keep(name: str) -> bool:
                return (not start or name >= start) and (not end or name < end)

            doc["items"] = [item for item in doc.get("items", []) if keep(item.get("name", ""))]
            doc["prefixes"] = [p for p in doc.get("prefixes", []) if keep(p)]
            response.json(doc)

    return listing


def _strictly_increasing_ns():
    last = 0

    def time_ns() -> int:
        nonlocal last
        last = max(time.time_ns(), last + 1)
        return last

    return time_ns


def _install() -> None:
    guarded = {
        _objects.insert: _guard_insert(_objects.insert),
        _objects.upload_partial: _guard_upload_partial(_objects.upload_partial),
        _objects.get: _guard_existing(_objects.get, read=True),
        _objects.download: _guard_existing(_with_generation_headers(_objects.download), read=True),
        _objects.delete: _guard_existing(_objects.delete, read=False),
        _objects.patch: _guard_existing(_objects.patch, read=False),
        _objects.ls: _with_offsets(_objects.ls),
    }
    # The route table holds the functions themselves; the module attributes are what
    # the handlers call each other through (get -> download, insert -> upload_partial,
    # and the Router's fallback for uploads POSTed without the /upload prefix).
    for _regex, methods in _server.HANDLERS:
        for method, fn in list(methods.items()):
            if fn in guarded:
                methods[method] = guarded[fn]
    for fn, wrapped in guarded.items():
        setattr(_objects, fn.__name__, wrapped)

    _objects.time = types.SimpleNamespace(time_ns=_strictly_increasing_ns())

    http.server.HTTPServer.request_queue_size = 1024

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        socketserver_handle_error(self, request, client_address)

    socketserver_handle_error = http.server.HTTPServer.handle_error
    http.server.HTTPServer.handle_error = handle_error

    write_config = _storage.Storage._write_config_to_file

    def _write_config_to_file(self):
        if self._use_memory_fs:
            return
        write_config(self)

    _storage.Storage._write_config_to_file = _write_config_to_file


def main(argv: list[str] | None = None) -> None:
    _install()
    _stock_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
