"""Refs on Google Cloud Storage through gcsfs: every write and delete is conditioned on
``ifGenerationMatch`` (0 = must not exist); gcsfs raises any 412 as FileExistsError.

gcsfs's pipe_file takes no extra arguments, so writes go through its lower-level
``call`` with a media upload, as gcsfs itself does for small files.
"""

from __future__ import annotations

from .base import MISSING
from .remote import VersionedRefStore

_READ_ATTEMPTS = 20


class GCSRefStore(VersionedRefStore):
    def _read(self, path):
        # One GET: the media download carries x-goog-generation, the generation of
        # exactly the bytes in its body.
        try:
            headers, data = self.fs.call("GET", self.fs.url(path))
        except FileNotFoundError:
            return MISSING
        generation = headers.get("x-goog-generation")
        if generation is None:
            return self._read_pinned(path)
        return data, int(generation)

    def _read_pinned(self, path):
        """For a server that sends no generation header: look the generation up, then
        download only if it is still that one (else look again)."""
        bucket, key, _ = self.fs.split_path(path)
        for _ in range(_READ_ATTEMPTS):
            try:
                meta = self.fs.call("GET", "b/{}/o/{}", bucket, key, json_out=True)
                generation = int(meta["generation"])
                _, data = self.fs.call("GET", self.fs.url(path), ifGenerationMatch=str(generation))
            except FileNotFoundError:
                return MISSING
            except FileExistsError:  # 412: rewritten between the two requests
                continue
            return data, generation
        raise OSError(f"{path} kept changing while being read")

    def _upload(self, path, data, generation: int) -> bool:
        bucket, key, _ = self.fs.split_path(path)
        try:
            self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{bucket}/o",
                uploadType="media",
                name=key,
                ifGenerationMatch=str(generation),
                data=data,
                headers={"Content-Type": "application/octet-stream"},
                json_out=True,
            )
        except FileExistsError:
            return False
        finally:
            self.fs.invalidate_cache(path)
        return True

    def _create(self, path, data):
        return self._upload(path, data, 0)

    def _replace(self, path, data, generation):
        return self._upload(path, data, generation)

    def _delete(self, path, generation):
        bucket, key, _ = self.fs.split_path(path)
        try:
            self.fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=str(generation))
        except (FileExistsError, FileNotFoundError):
            return False
        finally:
            self.fs.invalidate_cache(path)
        return True
