"""moto_server with S3's conditional writes decided atomically, as AWS decides them.

    python tests/moto_server_atomic.py -H 127.0.0.1 -p PORT     # moto_server's arguments

moto's PutObject and DeleteObject check If-Match / If-None-Match and then write, with no lock,
on a threaded server: two conditional writers racing on one key can both pass the check and both
win (test_refs's thread race saw two set_if_equals winners on s3 under load). AWS decides each
conditional request atomically and refs/s3.py relies on that, so here the check-then-write
handlers run under one lock: a double winner on s3 is then objstore's, not the emulator's.
"""

from __future__ import annotations

import functools
import threading

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

if __name__ == "__main__":
    main()
