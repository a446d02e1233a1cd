"""moto_server with S3's conditional writes decided atomically, as AWS decides them.

    python tests/moto_server_atomic.py -H 127.0.0.1 -p PORT     # moto_server's arguments

moto's PutObject and DeleteObject check If-Match / If-None-Match and then write, with no lock,
on a threaded server: two conditional writers racing on one key can both pass the check and both
win (test_refs's thread race saw two set_if_equals winners on s3 under load). AWS decides each
conditional request atomically and refs/s3.py relies on that, so here the check-then-write
handlers run under one lock: a double winner on s3 is then objstore's, not the emulator's.

It also answers ListMultipartUploads with when each upload was started: moto says
2010-11-10T20:48:33Z for every one, and gc keeps an unfinished upload younger than its grace
period (a live writer's) by that time, as it would on AWS.
"""

from __future__ import annotations

import datetime
import functools
import re
import threading

from moto.s3.models import FakeMultipart
from moto.s3.responses import S3Response
from moto.server import main

_LOCK = threading.RLock()


def _atomic(handler):
    @functools.wraps(handler)
    def locked(self, *args, **kwargs):
        with _LOCK:
            return handler(self, *args, **kwargs)

    return locked


# The handlers that read a key's current state to decide a write.
for _name in ("put_object", "copy_object", "delete_object"):
    setattr(S3Response, _name, _atomic(getattr(S3Response, _name)))

_STARTED: dict[str, str] = {}  # upload id -> when CreateMultipartUpload made it
_UPLOAD = re.compile(r"(<UploadId>([^<]*)</UploadId>.*?<Initiated>)[^<]*(</Initiated>)", re.DOTALL)


def _remember_start(init):
    @functools.wraps(init)
    def start(self, *args, **kwargs):
        init(self, *args, **kwargs)
        now = datetime.datetime.now(datetime.UTC)
        _STARTED[self.id] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"

    return start


def _with_start_times(handler):
    @functools.wraps(handler)
    def listing(self, *args, **kwargs):
        status, headers, body = handler(self, *args, **kwargs)
        text = body.decode() if isinstance(body, bytes) else body
        text = _UPLOAD.sub(lambda m: m.group(1) + _STARTED.get(m.group(2), "2010-11-10T20:48:33.000Z") + m.group(3), text)
        return status, headers, text.encode() if isinstance(body, bytes) else text

    return listing


FakeMultipart.__init__ = _remember_start(FakeMultipart.__init__)  # type: ignore[method-assign]
S3Response.list_multipart_uploads = _with_start_times(S3Response.list_multipart_uploads)  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
