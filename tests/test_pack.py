"""Pack files: the pure format (objstore.pack), the store's pack calls, and how a repository
writes, finds, reindexes, merges and upgrades to them, on every backend."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
import uuid

import pytest

from objstore import codec, hashing, model, pack
from objstore.errors import CorruptObject, ObjectNotFound
from objstore.format import FORMAT_VERSION
from objstore.layout import FORMAT_FILE
from objstore.repo import PACK_MIN_OBJECTS, Repository
from objstore.store import MISSING, open_store

# -- helpers --------------------------------------------------------------------------------


def h(text: str) -> str:
    return hashing.hash_text(text)


def value_obj(text: str):
    payload = model.value.encode("builtins.str", "pickle", text.encode())
    return h("value:" + text), "value", payload


def open_repo(target, index_dir, **kw) -> Repository:
    return Repository.open(target.url, target.storage_options, index_dir=index_dir, **kw)


def init_repo(target, index_dir, **kw) -> Repository:
    return Repository.init(target.url, target.storage_options, index_dir=index_dir, **kw)


def object_files(target) -> list[str]:
    """Every file under objects/, relative to it (``ab/cdef…`` or ``pack/<name>``), sorted."""
    fs = target.fs()
    base = f"{target.root}/objects"
    try:
        paths = fs.find(base)
    except FileNotFoundError:
        return []
    return sorted(p.split("/objects/", 1)[1] for p in paths)


def loose(oid: str) -> str:
    return f"{oid[:2]}/{oid[2:]}"


def journal_docs(target) -> list[dict]:
    fs = target.fs()
    try:
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{target.root}/journal", detail=False))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        _, payload = codec.decode(fs.cat_file(f"{target.root}/journal/{name}"), object_id=name)
        out.append(json.loads(payload))
    return out


def snapshot(repo: Repository) -> dict[str, list]:
    return {t: list(repo.index.scan(t)) for t in model.TABLES}


def set_format_version(target, version: list[int]) -> dict:
    fs = target.fs()
    path = f"{target.root}/{FORMAT_FILE}"
    doc = json.loads(fs.cat_file(path))
    doc["version"] = version
    fs.pipe_file(path, codec.canonical_json(doc))
    return doc


def read_format(target) -> dict:
    return json.loads(target.fs().cat_file(f"{target.root}/{FORMAT_FILE}"))


def make_pack(raw_toc, entries: bytes = b"", *, toc_at: int | None = None) -> bytes:
    """A pack file with a hand-written toc (for malformed ones): magic, entries, toc, tail."""
    body = pack.MAGIC + entries
    at = len(body) if toc_at is None else toc_at
    return body + codec.encode(pack.TOC_KIND, codec.canonical_json(raw_toc)) + struct.pack(">Q", at)


UUID = "0b5f3a1e-7c2d-4e8f-9a6b-1d2c3e4f5a6b"


def items3():
    a = value_obj("alpha")
    b = (UUID, "job", b'{"job": 1}')
    c = value_obj("gamma" * 30)
    return [(oid, kind, codec.encode(kind, payload)) for oid, kind, payload in (a, b, c)], [a, b, c]


# -- pure: build / parse / read_entry -------------------------------------------------------


def test_build_parse_round_trip_with_exact_offsets():
    encoded, originals = items3()
    name, data, located = pack.build(encoded)
    assert data.startswith(b"OBJPACK1")
    assert name == hashlib.sha256(data).hexdigest()[:40] + ".pack"
    assert pack.NAME_RE.fullmatch(name)
    # Entries are laid out back to back after the magic: <id>\0<loose encoding>.
    expected = []
    offset = 8
    for oid, kind, enc in encoded:
        length = len(oid) + 1 + len(enc)
        expected.append((oid, kind, pack.Location(name, offset, length)))
        assert data[offset : offset + length] == oid.encode() + b"\0" + enc
        offset += length
    assert located == expected
    assert [loc.offset for _, _, loc in located] == [
        8,
        8 + 41 + len(encoded[0][2]),
        8 + 41 + len(encoded[0][2]) + 37 + len(encoded[1][2]),
    ]
    # The tail is the toc's offset, right after the last entry; the toc is a packtoc object.
    (toc_at,) = struct.unpack(">Q", data[-8:])
    assert toc_at == offset
    kind, toc = codec.decode(data[toc_at:-8], object_id="toc")
    assert kind == "packtoc"
    assert json.loads(toc) == [[oid, k, loc.offset, loc.length] for oid, k, loc in expected]
    assert pack.parse(data, name=name) == expected
    for (oid, kind, loc), (_, okind, payload) in zip(located, originals):
        entry = data[loc.offset : loc.offset + loc.length]
        assert pack.read_entry(oid, entry) == (okind, payload)
        assert pack.read_entry(oid, entry, expect_kind=okind) == (okind, payload)
    with pytest.raises(CorruptObject) as info:
        pack.read_entry(located[0][0], data[located[0][2].offset :][: located[0][2].length], expect_kind="tag")
    assert info.value.object_id == located[0][0]


def test_build_is_content_named_and_keeps_the_first_of_a_repeated_id():
    encoded, originals = items3()
    name, data, _ = pack.build(encoded)
    assert pack.build(list(encoded)) == pack.build(encoded)  # same content, same name and bytes
    other_name, other, _ = pack.build(encoded[:2])
    assert other_name != name and other != data
    reordered_name, _, _ = pack.build([encoded[1], encoded[0], encoded[2]])
    assert reordered_name != name

    a_id, a_kind, a_enc = encoded[0]
    later = codec.encode("tag", b"{}")
    name2, data2, located = pack.build([encoded[0], (a_id, "tag", later), encoded[1], encoded[0]])
    assert [(oid, kind) for oid, kind, _ in located] == [(a_id, a_kind), (encoded[1][0], "job")]
    assert pack.parse(data2, name=name2) == located
    loc = located[0][2]
    assert loc.length == 41 + len(a_enc)
    assert pack.read_entry(a_id, data2[loc.offset : loc.offset + loc.length]) == ("value", originals[0][2])
    assert later not in data2


def test_an_empty_pack_parses_to_nothing():
    name, data, located = pack.build([])
    assert located == [] and pack.parse(data, name=name) == []


def test_read_entry_refuses_another_objects_slice_and_damage():
    encoded, _ = items3()
    name, data, located = pack.build(encoded)
    (a, _, la), (b, _, lb), (c, _, lc) = located
    with pytest.raises(CorruptObject) as info:
        pack.read_entry(a, data[lc.offset : lc.offset + lc.length])
    assert info.value.object_id == a and c in str(info.value)
    with pytest.raises(CorruptObject) as info:
        pack.read_entry(c, data[lb.offset : lb.offset + lb.length])
    assert info.value.object_id == c and b in str(info.value)
    # A slice that starts right but runs into the next entry is not this object either.
    with pytest.raises(CorruptObject) as info:
        pack.read_entry(a, data[la.offset : la.offset + la.length + 5])
    assert info.value.object_id == a
    with pytest.raises(CorruptObject):
        pack.read_entry(a, data[la.offset : la.offset + la.length - 1])
    # Every single flipped byte of an entry (id prefix or frame) is caught, naming the object.
    for oid, _, loc in located:
        entry = data[loc.offset : loc.offset + loc.length]
        for i in range(len(entry)):
            for mask in (0x01, 0xFF):
                bad = bytearray(entry)
                bad[i] ^= mask
                with pytest.raises(CorruptObject) as info:
                    pack.read_entry(oid, bytes(bad))
                assert info.value.object_id == oid, (oid, i, mask)


def test_parse_refuses_truncated_and_foreign_files():
    encoded, _ = items3()
    name, data, _ = pack.build(encoded)
    where = f"pack/{name}"
    bad = {
        "empty": b"",
        "magic only": pack.MAGIC,
        "magic and short tail": pack.MAGIC + b"\0\0\0",
        "cut by one byte": data[:-1],
        "cut inside the toc": data[: len(data) - 20],
        "cut inside the last entry": data[: pack.parse(data, name=name)[-1][2].offset + 10],
        "bad magic": b"OBJPACK2" + data[8:],
        "not a pack": b"hello, this is a text file that is long enough",
        "toc offset past the end": data[:-8] + struct.pack(">Q", len(data)),
        "toc offset past the toc": data[:-8] + struct.pack(">Q", len(data) - 7),
        "toc offset inside the magic": data[:-8] + struct.pack(">Q", 3),
        "toc offset at an entry": data[:-8] + struct.pack(">Q", 8),
        "huge toc offset": data[:-8] + b"\xff" * 8,
        "extra byte after the tail": data + b"\0",
    }
    for why, blob in bad.items():
        with pytest.raises(CorruptObject) as info:
            pack.parse(blob, name=name)
        assert info.value.object_id == where, why
        if why.startswith("toc offset") and why != "toc offset at an entry":
            assert "outside the pack" in info.value.reason, why


def test_parse_refuses_a_malformed_toc():
    encoded, _ = items3()
    oid, kind, enc = encoded[0]
    entries = oid.encode() + b"\0" + enc
    n = len(entries)
    good = [oid, kind, 8, n]
    assert pack.parse(make_pack([good], entries), name="x" * 40 + ".pack")[0][2] == pack.Location(
        "x" * 40 + ".pack", 8, n
    )
    malformed = {
        "toc not a list": {"a": good},
        "entry not a list": [{"id": oid}],
        "entry too short": [[oid, kind, 8]],
        "entry too long": [[oid, kind, 8, n, 0]],
        "bad id": [["../etc/passwd", kind, 8, n]],
        "short hash": [[oid[:39], kind, 8, n]],
        "id not a str": [[123, kind, 8, n]],
        "kind not a str": [[oid, 5, 8, n]],
        "offset a str": [[oid, kind, "8", n]],
        "offset a bool": [[oid, kind, True, n]],
        "offset a float": [[oid, kind, 8.0, n]],
        "offset inside the magic": [[oid, kind, 0, n]],
        "entry past the toc": [[oid, kind, 8, n + 1]],
        "second entry bad": [good, [oid, kind, 8, 10**9]],
    }
    for why, toc in malformed.items():
        with pytest.raises(CorruptObject) as info:
            pack.parse(make_pack(toc, entries), name="y" * 40 + ".pack")
        assert info.value.object_id == "pack/" + "y" * 40 + ".pack", why
    # A toc that is not a packtoc object, or not JSON, is refused too.
    body = pack.MAGIC + entries
    for toc_blob in (codec.encode("value", b"[]"), codec.encode("packtoc", b"{not json"), b"\x00" * 20):
        with pytest.raises(CorruptObject):
            pack.parse(body + toc_blob + struct.pack(">Q", len(body)), name="y" * 40 + ".pack")


def test_parse_refuses_toc_entries_whose_length_is_impossible():
    # An entry is at least its id, a NUL and a frame: Location.parse refuses any shorter
    # length as "impossible", so parse must not hand out such a Location either.
    encoded, _ = items3()
    oid, kind, enc = encoded[0]
    entries = oid.encode() + b"\0" + enc
    name = "y" * 40 + ".pack"
    for length in (-1, -len(entries), 0, 3, len(oid) + 1):
        with pytest.raises(CorruptObject) as info:
            got = pack.parse(make_pack([[oid, kind, 8, length]], entries), name=name)
            pytest.fail(f"length {length}: parse returned {got}")
        assert info.value.object_id == f"pack/{name}"


def test_location_parse_of_non_ascii_digits_is_a_corrupt_object():
    # str.isdigit() accepts digits int() does not parse ("²"): the refusal must still be a
    # CorruptObject naming the object, not a bare ValueError from int().
    oid = h("x")
    name = "0123456789abcdef0123456789abcdef01234567.pack"
    for text in (f"{name}:²:50", f"{name}:8:5²", f"{name}:8:①"):
        with pytest.raises(CorruptObject) as info:
            pack.Location.parse(text, object_id=oid)
        assert info.value.object_id == oid, text


def test_location_encode_parse_round_trip_and_garbage():
    oid = h("x")
    name = "0123456789abcdef0123456789abcdef01234567.pack"
    loc = pack.Location(name, 8, 1234)
    assert loc.encode() == f"{name}:8:1234"
    assert pack.Location.parse(loc.encode(), object_id=oid) == loc
    big = pack.Location(name, 10**12, 42)
    assert pack.Location.parse(big.encode(), object_id=oid) == big
    # The smallest possible entry: the id, its NUL and one byte.
    assert pack.Location.parse(f"{name}:8:{len(oid) + 2}", object_id=oid).length == 42
    garbage = [
        "",
        "x",
        "name:1",
        f"{name}",
        f"{name}:8",
        f"{name}:8:",
        f"{name}::50",
        f"{name}:8:50:9",
        f"{name}:-8:50",
        f"{name}:8:-50",
        f"{name}: 8:50",
        f"{name}:0x8:50",
        f"{name}:8.0:50",
        f"{name.upper()}:8:50",
        f"{'g' * 40}.pack:8:50",
        f"{name[:-5]}:8:50",
        f"{name[1:]}:8:50",
        f"../{name}:8:50",
        f"{name}:7:50",  # offset inside the magic
        f"{name}:0:50",
        f"{name}:8:{len(oid) + 1}",  # too short to hold the id and any frame
        f"{name}:8:0",
    ]
    for text in garbage:
        with pytest.raises(CorruptObject) as info:
            pack.Location.parse(text, object_id=oid)
        assert info.value.object_id == oid, text


# -- the store's pack calls -----------------------------------------------------------------


def test_put_packed_splits_at_max_pack_bytes_and_reads_back(target, monkeypatch):
    store = open_store(target.fs(), target.root)
    # Equal-size payloads that do not compress: every encoding has the same length.
    payloads = [hashlib.sha256(str(i).encode()).digest() * 8 for i in range(10)]
    items = [(h(f"p{i}"), "blob", p) for i, p in enumerate(payloads)]
    sizes = {len(codec.encode("blob", p, level=store.level)) for p in payloads}
    assert len(sizes) == 1
    (e,) = sizes
    monkeypatch.setattr(pack, "MAX_PACK_BYTES", 3 * e)  # three encodings fit exactly
    located = store.put_packed(items)
    assert [(oid, kind) for oid, kind, _ in located] == [(oid, kind) for oid, kind, _ in items]
    names = [loc.pack for _, _, loc in located]
    groups = [names[0:3], names[3:6], names[6:9], names[9:10]]
    assert all(len(set(g)) == 1 for g in groups)
    assert len(set(names)) == 4
    assert store.pack_names() == sorted(set(names))
    assert object_files(target) == sorted(f"pack/{n}" for n in set(names))
    for (oid, kind, payload), (_, _, loc) in zip(items, located):
        assert store.get_packed(oid, loc) == (kind, payload)
        assert store.get_packed(oid, loc, expect_kind="blob") == (kind, payload)
        assert not store.has(oid)  # packed objects have no loose path
    for n in set(names):
        toc, data = store.read_pack(n)
        assert toc == [t for t in located if t[2].pack == n]
        assert n == hashlib.sha256(data).hexdigest()[:40] + ".pack"
    # Writing the same objects again writes the same packs: nothing new appears.
    assert store.put_packed(items) == located
    assert store.pack_names() == sorted(set(names))
    # A payload over MAX_OBJECT_BYTES is refused; the limit itself is accepted.
    monkeypatch.setattr(pack, "MAX_OBJECT_BYTES", len(payloads[0]))
    with pytest.raises(ValueError):
        store.put_packed([(h("big"), "blob", payloads[0] + b"!")])
    (one,) = store.put_packed([(h("edge"), "blob", payloads[0][::-1])])
    assert store.get_packed(h("edge"), one[2]) == ("blob", payloads[0][::-1])


def test_get_packed_of_a_missing_pack_and_a_wrong_location(target):
    store = open_store(target.fs(), target.root)
    assert store.pack_names() == []
    items = [(h(f"w{i}"), "blob", f"payload {i}".encode()) for i in range(3)]
    located = store.put_packed(items)
    (a, _, la), (b, _, lb), _ = located
    gone = pack.Location("f" * 40 + ".pack", la.offset, la.length)
    with pytest.raises(ObjectNotFound):
        store.get_packed(a, gone)
    with pytest.raises(ObjectNotFound):
        store.read_pack(gone.pack)
    with pytest.raises(CorruptObject) as info:
        store.get_packed(a, lb)  # b's entry
    assert info.value.object_id == a
    past_end = pack.Location(la.pack, la.offset, 10**6)
    with pytest.raises(CorruptObject) as info:
        store.get_packed(a, past_end)
    assert info.value.object_id == a


# -- repository: flush -------------------------------------------------------------------


def test_flush_of_many_small_objects_writes_one_pack(target, tmp_path):
    vals = [value_obj(f"small {i}") for i in range(12)]
    with init_repo(target, tmp_path / "a") as repo:
        assert repo.packs and repo.format["version"] == list(FORMAT_VERSION)
        for v in vals:
            repo.add(*v)
        repo.flush()
        files = object_files(target)
        assert len(files) == 1 and files[0].startswith("pack/"), files
        name = files[0].split("/", 1)[1]
        assert pack.NAME_RE.fullmatch(name) and repo.store.pack_names() == [name]
        toc, _ = repo.store.read_pack(name)
        assert [(oid, kind) for oid, kind, _ in toc] == [(v[0], "value") for v in vals]
        for (oid, kind, payload), (_, _, loc) in zip(vals, toc):
            assert repo.index.get("packed", oid) == loc.encode()
            assert repo.index.get("objects", oid) == "value"
            assert repo.get(oid) == (kind, payload)
            assert not repo.store.has(oid)
        (doc,) = journal_docs(target)
        assert doc["objects"] == [[v[0], "value"] for v in vals]
        packed = [e for e in doc["entries"] if e[1] == "packed"]
        assert packed == [["put", "packed", oid, loc.encode()] for oid, _, loc in toc]
    # A second repository, with an index of its own, finds them through the journal.
    with open_repo(target, tmp_path / "b") as other:
        for (oid, kind, payload), (_, _, loc) in zip(vals, toc):
            assert other.index.get("packed", oid) == loc.encode()
            assert other.index.get("value_type", oid) == "builtins.str"
            assert other.get(oid) == (kind, payload)
            assert other.get(oid, expect_kind="value") == (kind, payload)
    assert object_files(target) == [f"pack/{name}"]


def test_flush_of_a_single_object_writes_it_loose(target, tmp_path):
    assert PACK_MIN_OBJECTS == 2
    v = value_obj("lonely")
    with init_repo(target, tmp_path / "a") as repo:
        repo.add(*v)
        repo.flush()
        assert object_files(target) == [loose(v[0])]
        assert repo.index.get("packed", v[0]) is MISSING
        assert repo.store.get(v[0]) == (v[1], v[2])
        (doc,) = journal_docs(target)
        assert not [e for e in doc["entries"] if e[1] == "packed"]
        # Two objects make a pack.
        pair = [value_obj("one of two"), value_obj("two of two")]
        for p in pair:
            repo.add(*p)
        repo.flush()
        files = object_files(target)
        assert len(files) == 2 and loose(v[0]) in files
        assert [f for f in files if f.startswith("pack/")] != []
        assert not repo.store.has(pair[0][0]) and not repo.store.has(pair[1][0])
    with open_repo(target, tmp_path / "b") as other:
        for x in [v, *pair]:
            assert other.get(x[0]) == (x[1], x[2])


def test_object_over_max_object_bytes_stays_loose(target, tmp_path, monkeypatch):
    base = len(value_obj("x" * 100)[2])
    monkeypatch.setattr(pack, "MAX_OBJECT_BYTES", base)
    at_limit = value_obj("y" * 100)  # exactly MAX_OBJECT_BYTES: still packed
    over = value_obj("z" * 101)  # one byte more: loose
    smalls = [value_obj(f"s{i}") for i in range(3)]
    assert len(at_limit[2]) == base and len(over[2]) == base + 1
    with init_repo(target, tmp_path / "a") as repo:
        for v in [smalls[0], over, at_limit, *smalls[1:]]:
            repo.add(*v)
        repo.flush()
        files = object_files(target)
        packs = [f for f in files if f.startswith("pack/")]
        assert len(packs) == 1 and sorted(set(files) - set(packs)) == [loose(over[0])]
        toc, _ = repo.store.read_pack(packs[0].split("/", 1)[1])
        assert sorted(oid for oid, _, _ in toc) == sorted(v[0] for v in [*smalls, at_limit])
        assert repo.index.get("packed", over[0]) is MISSING
    with open_repo(target, tmp_path / "b") as other:
        for v in [*smalls, at_limit, over]:
            assert other.get(v[0]) == (v[1], v[2])
        assert other.index.get("packed", over[0]) is MISSING
        assert other.index.get("objects", over[0]) == "value"


def test_only_one_small_object_beside_a_big_one_goes_loose(tmp_path, monkeypatch):
    monkeypatch.setattr(pack, "MAX_OBJECT_BYTES", 100)
    big, small = value_obj("B" * 500), value_obj("s")
    assert len(small[2]) <= 100 < len(big[2])
    with Repository.init(str(tmp_path / "r"), index_dir=tmp_path / "ix") as repo:
        repo.add(*big)
        repo.add(*small)
        repo.flush()
    assert not (tmp_path / "r" / "objects" / "pack").exists() or not list((tmp_path / "r" / "objects" / "pack").iterdir())
    for v in (big, small):
        assert (tmp_path / "r" / "objects" / v[0][:2] / v[0][2:]).is_file()


# -- repository: readers, reindex, merge ----------------------------------------------------


def let_catch_up(repo) -> None:
    """Wait until a miss of an id this index does not know may read the journal again: such a
    miss only catches up, at most once per CATCH_UP_INTERVAL (no LIST per unknown id)."""
    time.sleep(max(0.0, repo.refresher.catch_up_due() - time.monotonic()) + 0.05)


def test_reader_opened_before_the_flush_finds_packed_objects(target, tmp_path):
    a = init_repo(target, tmp_path / "a")
    b = open_repo(target, tmp_path / "b")
    vals = [value_obj(f"from a {i}") for i in range(5)]
    for v in vals:
        a.add(*v)
    a.flush()
    assert all(a.index.get("packed", v[0]) is not MISSING for v in vals)
    assert all(b.index.get("packed", v[0]) is MISSING for v in vals)
    let_catch_up(b)
    assert b.get(vals[2][0]) == (vals[2][1], vals[2][2])  # a miss, a catch-up, a ranged read
    assert b.index.get("packed", vals[0][0]) == a.index.get("packed", vals[0][0])
    for v in vals:
        assert b.get(v[0], expect_kind="value") == (v[1], v[2])
    with pytest.raises(ObjectNotFound):
        b.get(h("never written"))
    with pytest.raises(ObjectNotFound):
        b.get(str(uuid.uuid4()))
    a.close()
    b.close()


def test_full_scan_reindex_finds_packed_objects(target, tmp_path):
    vals = [value_obj(f"scan {i}") for i in range(6)]
    single = value_obj("scan single")
    with init_repo(target, tmp_path / "ix") as repo:
        for v in vals:
            repo.add(*v)
        repo.flush()
        repo.add(*single)
        repo.flush()
        before = snapshot(repo)
        assert len(before["packed"]) == 6 and len(before["objects"]) == 7
        target.fs().rm(f"{target.root}/journal", recursive=True)
        # Names under objects/pack/ that are not pack names are no packs (nor foreign objects).
        target.fs().pipe_file(f"{target.root}/objects/pack/README", b"not a pack")
        target.fs().pipe_file(f"{target.root}/objects/pack/{'a' * 40}.pack.tmp", b"half")
        assert len(repo.store.pack_names()) == 1
        stats = repo.reindex(full_scan=True)
        assert stats["segments"] == 0 and stats["objects"] == 7 and stats["corrupt"] == 0
        assert snapshot(repo) == before
        assert repo.index.get("objects", vals[0][0]) == "value"
        assert repo.index.get("value_type", vals[0][0]) == "builtins.str"
        assert pack.Location.parse(repo.index.get("packed", vals[0][0]), object_id=vals[0][0]).offset == 8
        for v in [*vals, single]:
            assert repo.get(v[0]) == (v[1], v[2])
        foreign: list[str] = []
        assert list(repo.store.iter_ids(on_foreign=foreign.append)) == [single[0]]
        assert foreign == []
    # Without a full scan, a journal-less reindex knows nothing of them (the scan did the work).
    with open_repo(target, tmp_path / "ix2") as other:
        assert other.index.get("packed", vals[0][0]) is MISSING
        other.reindex(full_scan=True)
        assert snapshot(other) == before


def test_copy_merge_of_two_local_repositories_with_packs(tmp_path):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = Repository.init(str(a_dir), index_dir=tmp_path / "ixa")
    b = Repository.init(str(b_dir), index_dir=tmp_path / "ixb")
    a_vals = [value_obj(f"a{i}") for i in range(5)]
    b_vals = [value_obj(f"b{i}") for i in range(7)]
    shared = [value_obj("shared 1"), value_obj("shared 2")]
    a_single = value_obj("a alone")
    for v in a_vals:
        a.add(*v)
    a.flush()
    a.add(*a_single)
    a.flush()
    for repo in (a, b):
        for v in shared:
            repo.add(*v)
        repo.flush()
    for v in b_vals:
        b.add(*v)
    b.flush()
    a.close()
    a_packs = {p.name for p in (a_dir / "objects" / "pack").iterdir()}
    b_packs = {p.name for p in (b_dir / "objects" / "pack").iterdir()}
    assert len(a_packs) == 2 and len(b_packs) == 2 and len(a_packs & b_packs) == 1  # same content, same name
    for sub in ("objects", "journal"):
        shutil.copytree(a_dir / sub, b_dir / sub, dirs_exist_ok=True)
    assert {p.name for p in (b_dir / "objects" / "pack").iterdir()} == a_packs | b_packs
    assert b.refresh() == 3
    everything = a_vals + b_vals + shared + [a_single]
    for v in everything:
        assert b.get(v[0]) == (v[1], v[2])
        assert b.index.get("objects", v[0]) == "value"
        assert b.index.get("value_type", v[0]) == "builtins.str"
    b.close()
    with Repository.open(str(b_dir), index_dir=tmp_path / "fresh") as again:
        for v in everything:
            assert again.get(v[0]) == (v[1], v[2])
        stats = again.reindex(full_scan=True)
        assert stats["objects"] == len(everything) and stats["corrupt"] == 0
        for v in everything:
            assert again.get(v[0]) == (v[1], v[2])


def test_corrupt_packed_object_is_named_and_its_neighbours_still_read(tmp_path):
    url = str(tmp_path / "r")
    vals = [value_obj(f"neighbour {i}" * 5) for i in range(5)]
    victim = vals[2]
    with Repository.init(url, index_dir=tmp_path / "ix") as repo:
        for v in vals:
            repo.add(*v)
        repo.flush()
        loc = pack.Location.parse(repo.index.get("packed", victim[0]), object_id=victim[0])
    path = tmp_path / "r" / "objects" / "pack" / loc.pack
    with open(path, "r+b") as f:
        f.seek(loc.offset + loc.length - 12)  # inside the frame, before its checksum
        f.write(b"\xff\x00\xff\x00")
    for ix in ("ix", "fresh"):
        with Repository.open(url, index_dir=tmp_path / ix) as repo:
            with pytest.raises(CorruptObject) as info:
                repo.get(victim[0])
            assert info.value.object_id == victim[0]
            for v in vals:
                if v is not victim:
                    assert repo.get(v[0]) == (v[1], v[2])
    with Repository.open(url, index_dir=tmp_path / "scan") as repo:
        stats = repo.reindex(full_scan=True)
        assert stats["corrupt"] == 1 and stats["objects"] == 4
        shutil.rmtree(tmp_path / "r" / "journal")  # now only the scan can know them
        stats = repo.reindex(full_scan=True)
        assert stats["corrupt"] == 1 and stats["objects"] == 4 and stats["segments"] == 0
        assert repo.index.get("packed", victim[0]) is MISSING
        assert repo.index.get("objects", victim[0]) is MISSING
        for v in vals:
            if v is not victim:
                assert repo.index.get("objects", v[0]) == "value"
                assert repo.get(v[0]) == (v[1], v[2])
    # Damage in the id prefix: the entry no longer says it is the victim's.
    with open(path, "r+b") as f:
        f.seek(loc.offset)
        f.write(b"0" if victim[0][0] != "0" else b"1")
    with Repository.open(url, index_dir=tmp_path / "ix") as repo:
        with pytest.raises(CorruptObject, match="belongs to") as info:
            repo.get(victim[0])
        assert info.value.object_id == victim[0]


# -- format upgrade -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["memory", "local"], indirect=True)
def test_open_upgrades_a_local_major_1_repository(target, tmp_path):
    init_repo(target, tmp_path / "ix0").close()
    old = set_format_version(target, [1, 0])
    with open_repo(target, tmp_path / "ix1") as repo:
        assert repo.format["version"] == list(FORMAT_VERSION) and repo.packs
        on_disk = read_format(target)
        assert on_disk["version"] == list(FORMAT_VERSION) and on_disk["upgraded_from"] == [1, 0]
        assert on_disk["repo_id"] == old["repo_id"] and on_disk["created"] == old["created"]
        assert repo.upgrade() is False
        vals = [value_obj(f"after upgrade {i}") for i in range(3)]
        for v in vals:
            repo.add(*v)
        repo.flush()
        files = object_files(target)
        assert len(files) == 1 and files[0].startswith("pack/")
    with open_repo(target, tmp_path / "ix2") as repo:
        assert read_format(target) == on_disk  # not rewritten again
        for v in vals:
            assert repo.get(v[0]) == (v[1], v[2])


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_a_shared_major_1_repository_waits_for_an_explicit_upgrade(target, tmp_path):
    init_repo(target, tmp_path / "ix0").close()
    old = set_format_version(target, [1, 0])
    repo = open_repo(target, tmp_path / "ix1")
    assert repo.format["version"] == [1, 0] and not repo.packs
    assert read_format(target) == old
    first = [value_obj(f"v1 {i}") for i in range(4)]
    for v in first:
        repo.add(*v)
    repo.flush()
    assert object_files(target) == sorted(loose(v[0]) for v in first)
    assert repo.upgrade() is True
    on_disk = read_format(target)
    assert on_disk["version"] == list(FORMAT_VERSION) and on_disk["upgraded_from"] == [1, 0]
    assert on_disk["repo_id"] == old["repo_id"]
    assert repo.packs and repo.format == on_disk
    assert repo.upgrade() is False
    assert read_format(target) == on_disk
    second = [value_obj(f"v2 {i}") for i in range(4)]
    for v in second:
        repo.add(*v)
    repo.flush()
    files = object_files(target)
    packs = [f for f in files if f.startswith("pack/")]
    assert len(packs) == 1 and sorted(set(files) - set(packs)) == sorted(loose(v[0]) for v in first)
    repo.close()
    with open_repo(target, tmp_path / "ix2") as other:
        assert other.packs
        for v in first + second:
            assert other.get(v[0]) == (v[1], v[2])


@pytest.mark.parametrize("target", ["s3"], indirect=True)
def test_reader_opened_before_an_upgrade_finds_objects_packed_after_it(target, tmp_path):
    # A long-running worker opened the bucket at major 1; `objstore upgrade` then runs and a
    # new writer packs its objects. The worker runs this same objstore (it reads packs), so an
    # object named by the new writer must still be found through the journal.
    init_repo(target, tmp_path / "ix0").close()
    set_format_version(target, [1, 0])
    worker = open_repo(target, tmp_path / "worker")
    assert not worker.packs
    upgrader = open_repo(target, tmp_path / "upgrader")
    assert upgrader.upgrade() is True
    upgrader.close()
    writer = open_repo(target, tmp_path / "writer")
    assert writer.packs
    vals = [value_obj(f"packed after upgrade {i}") for i in range(3)]
    for v in vals:
        writer.add(*v)
    writer.flush()
    assert all(writer.index.get("packed", v[0]) is not MISSING for v in vals)
    let_catch_up(worker)
    try:
        for v in vals:
            assert worker.get(v[0]) == (v[1], v[2])
    finally:
        writer.close()
        worker.close()


# ------------------------------------------------------------------------------ read plans


def test_plan_reads_merges_neighbours_and_keeps_every_index():
    L = pack.Location
    a, b = "a" * 40 + ".pack", "b" * 40 + ".pack"
    locs = [L(a, 100, 50), L(b, 8, 10), L(a, 8, 60), L(a, 1 << 20, 10), L(a, 200, 30)]
    plans = pack.plan_reads(locs, max_gap=100, max_span=1 << 16)
    assert plans == [(a, 8, 222, [2, 0, 4]), (a, 1 << 20, 10, [3]), (b, 8, 10, [1])]
    assert sorted(i for _, _, _, members in plans for i in members) == list(range(len(locs)))
    # Nothing merges past the span limit, however close.
    tight = pack.plan_reads([L(a, 8, 60), L(a, 68, 60)], max_gap=100, max_span=100)
    assert [(o, n) for _, o, n, _ in tight] == [(8, 60), (68, 60)]
    assert pack.plan_reads([]) == []


def test_get_packed_many_reads_one_range_per_pack_and_names_damage(tmp_path):
    from objstore.fs import open_url

    store = open_store(*open_url(str(tmp_path)))
    items = [(hashing.hash_text(f"p{i}"), "value", b"x%d" % i) for i in range(20)]
    located = store.put_packed(items)
    seen = []
    read_ranges = store.blobs.read_ranges
    store.blobs.read_ranges = lambda reqs: (seen.append(list(reqs)), read_ranges(seen[-1]))[1]
    got = store.get_packed_many([(oid, loc) for oid, _, loc in reversed(located)])
    assert got == [(kind, payload) for _, kind, payload in reversed(items)]
    assert len(seen) == 1 and len(seen[0]) == 1  # one request for twenty objects
    gone = pack.Location("c" * 40 + ".pack", 8, 50)
    assert store.get_packed_many([(items[0][0], gone)]) == [MISSING]
    with pytest.raises(ObjectNotFound) as exc:
        store.get_packed(items[0][0], gone)
    assert items[0][0] in str(exc.value) and "c" * 40 in str(exc.value)
