"""The test servers and the `target` fixture do what the rest of the suite assumes."""

from __future__ import annotations

import pytest

import servers


def test_target_roundtrip(target):
    fs = target.fs()
    base = target.root
    assert not fs.exists(f"{base}/a/one")
    fs.makedirs(f"{base}/a", exist_ok=True)  # local needs it; object stores ignore it
    fs.pipe_file(f"{base}/a/one", b"1")
    fs.pipe_file(f"{base}/a/two", b"22")
    fs.pipe_file(f"{base}/b", b"333")
    # a second instance sees the first one's writes (no shared cache between them)
    other = target.fs()
    assert other.cat_file(f"{base}/a/two") == b"22"
    found = sorted(p.rstrip("/")[len(base.rstrip("/")) + 1 :] for p in other.find(base))
    assert found == ["a/one", "a/two", "b"]
    other.rm(f"{base}/a/one")
    assert not target.fs().exists(f"{base}/a/one")


def test_targets_are_fresh(target, tmp_path):
    fs = target.fs()
    fs.makedirs(target.root, exist_ok=True)
    fs.pipe_file(f"{target.root}/x", b"x")
    second = servers.make_target_for(_Param(target.name, target), tmp_path / "second")
    try:
        assert second.root != target.root
        assert not second.fs().exists(f"{second.root}/x")
    finally:
        servers.discard_target(second)


class _Param:
    """Stand-in for pytest's `request` that reuses the running server."""

    def __init__(self, name, target):
        self.param = name
        self._server = target.server

    def getfixturevalue(self, _name):
        return self._server


def _gcs_fs(gcs_server):
    return servers.make_target("gcs", tmp_path=None, server=gcs_server)


def _media_upload(fs, path, data, **conditions):
    bucket, key, _ = fs.split_path(path)
    return fs.call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{bucket}/o",
        uploadType="media",
        name=key,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        json_out=True,
        **{k: str(v) for k, v in conditions.items()},
    )


def test_gcs_wrapper_refuses_stale_generation(gcs_server):
    """The stock emulator would overwrite here; the wrapper must answer 412."""
    target = _gcs_fs(gcs_server)
    fs = target.fs()
    path = f"{target.root}/ref"
    first = _media_upload(fs, path, b"one", ifGenerationMatch=0)
    gen1 = int(first["generation"])
    with pytest.raises(FileExistsError):  # gcsfs maps every 412 to FileExistsError
        _media_upload(fs, path, b"two", ifGenerationMatch=0)
    second = _media_upload(fs, path, b"two", ifGenerationMatch=gen1)
    gen2 = int(second["generation"])
    assert gen2 > gen1
    with pytest.raises(FileExistsError):
        _media_upload(fs, path, b"three", ifGenerationMatch=gen1)  # stale
    with pytest.raises(FileExistsError):
        _media_upload(fs, path, b"three", ifGenerationNotMatch=gen2)
    assert fs.cat_file(path) == b"two"

    bucket, key, _ = fs.split_path(path)
    with pytest.raises(FileExistsError):
        fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=str(gen1))
    assert fs.cat_file(path) == b"two"
    fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=str(gen2))
    fs.invalidate_cache()
    assert not fs.exists(path)


def test_gcs_wrapper_create_only_through_gcsfs(gcs_server):
    target = _gcs_fs(gcs_server)
    fs = target.fs()
    path = f"{target.root}/obj"
    fs.pipe_file(path, b"a", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"b", mode="create")
    with pytest.raises(FileExistsError):  # multipart via open("xb")
        with fs.open(path, "xb") as f:
            f.write(b"c")
    # resumable upload: precondition sent at initiation, checked again at completion
    big = f"{target.root}/big"
    fs.pipe_file(big, b"x" * (3 << 20), mode="create", chunksize=1 << 20)
    with pytest.raises(FileExistsError):
        fs.pipe_file(big, b"y" * (3 << 20), mode="create", chunksize=1 << 20)
    assert fs.cat_file(path) == b"a"
    assert fs.cat_file(big) == b"x" * (3 << 20)


def test_s3_conditional_writes(s3_server):
    target = servers.make_target("s3", tmp_path=None, server=s3_server)
    fs = target.fs()
    path = f"{target.root}/obj"
    fs.pipe_file(path, b"a", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"b", mode="create")
    etag = fs.info(path)["ETag"]
    fs.pipe_file(path, b"b", IfMatch=etag)
    with pytest.raises(OSError):
        fs.pipe_file(path, b"c", IfMatch=etag)
    assert fs.cat_file(path) == b"b"


def test_azure_conditional_writes(azure_server):
    from azure.core import MatchConditions

    target = servers.make_target("azure", tmp_path=None, server=azure_server)
    fs = target.fs()
    path = f"{target.root}/obj"
    fs.pipe_file(path, b"a", overwrite=False)
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"b", overwrite=False)
    etag = fs.info(path)["etag"]
    fs.pipe_file(path, b"b", etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(Exception) as err:
        fs.pipe_file(path, b"c", etag=etag, match_condition=MatchConditions.IfNotModified)
    assert "ResourceModified" in type(err.value).__name__ or "condition" in str(err.value).lower()
    assert fs.cat_file(path) == b"b"


def test_missing_binary_is_a_failure_with_the_fix(tmp_path):
    with pytest.raises(servers.ServerUnavailable, match="bash tools/test.sh"):
        servers.find_executable("no-such-server-binary-xyz", tmp_path / "nope")


def test_gcs_wrapper_checks_resumable_uploads_at_completion(gcs_server):
    """A resumable upload started with ifGenerationMatch=0 must fail if the object
    appeared before it completed (the precondition holds for the final write)."""
    target = _gcs_fs(gcs_server)
    fs = target.fs()
    path = f"{target.root}/late"
    bucket, key, _ = fs.split_path(path)
    headers, _ = fs.call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{bucket}/o",
        uploadType="resumable",
        name=key,
        ifGenerationMatch="0",
        json={"name": key},
    )
    session = headers["Location"]
    _media_upload(fs, path, b"winner", ifGenerationMatch=0)
    with pytest.raises(FileExistsError):
        fs.call("PUT", session, data=b"loser", headers={"Content-Range": "bytes 0-4/5"})
    assert fs.cat_file(path) == b"winner"


def test_gcs_wrapper_metageneration_and_reads(gcs_server):
    target = _gcs_fs(gcs_server)
    fs = target.fs()
    path = f"{target.root}/meta"
    bucket, key, _ = fs.split_path(path)
    obj = _media_upload(fs, path, b"m")
    gen, meta = obj["generation"], int(obj["metageneration"])
    with pytest.raises(FileExistsError):
        fs.call("PATCH", "b/{}/o/{}", bucket, key, ifMetagenerationMatch=str(meta + 5),
                json={"metadata": {"k": "v"}}, json_out=True)
    patched = fs.call("PATCH", "b/{}/o/{}", bucket, key, ifMetagenerationMatch=str(meta),
                      json={"metadata": {"k": "v"}}, json_out=True)
    assert int(patched["metageneration"]) == meta + 1
    with pytest.raises(FileExistsError):
        fs.call("GET", "b/{}/o/{}", bucket, key, ifGenerationMatch="1", json_out=True)
    headers, data = fs.call("GET", fs.url(path), ifGenerationMatch=gen)
    assert data == b"m" and headers["x-goog-generation"] == gen
    _media_upload(fs, f"{target.root}/empty", b"")  # the stock handler crashed on this
    assert fs.cat_file(f"{target.root}/empty") == b""
