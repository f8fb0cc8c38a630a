"""One owner per rule: the storage layout, IN-list chunking and the historic env names."""

from __future__ import annotations

from pathlib import Path

import pytest

from photoctl import config, db, storage
from photoctl.config import Settings
from photoctl.pipeline import storage_paths


def test_historic_env_names_are_every_key_with_an_env_name() -> None:
    expected = {f.metadata["env"] for _s, f in config.iter_keys() if f.metadata.get("env")}
    assert set(config.HISTORIC_ENV_NAMES) == expected
    assert {"PHOTO_QUEUE_WORKERS", "DB_POOL_SIZE"} <= expected


def test_in_chunks_bounds_every_slice_and_keeps_order() -> None:
    items = list(range(1201))
    chunks = list(db.in_chunks(items))
    assert [len(c) for c in chunks] == [500, 500, 201]
    assert [x for c in chunks for x in c] == items
    assert list(db.in_chunks([])) == []


def test_thumbs_and_previews_live_at_their_hash_prefixed_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    digest = "ab" + "0" * 62
    thumb, preview = storage_paths(settings, digest)
    assert thumb == settings.storage_root / "thumbs" / "ab" / f"{digest}.jpg"
    assert storage.relative_key(settings.storage_root, preview) == f"previews/ab/{digest}.jpg"


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "k" / "ab" / "x.jpg"
    with storage.atomic_write(target) as stream:
        stream.write(b"old")
    with pytest.raises(RuntimeError), storage.atomic_write(target) as stream:
        stream.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_a_staged_file_is_published_once_and_the_stage_is_cleaned(tmp_path: Path) -> None:
    final = storage.path(tmp_path, storage.key(storage.UPLOADS, "cd" + "1" * 62, ".png"))
    outcomes = []
    for _ in range(2):
        with storage.staging(tmp_path, storage.UPLOADS) as (out, temporary):
            out.write(b"content")
            out.close()
            outcomes.append(storage.publish_once(temporary, final))
    assert outcomes == [True, False]
    assert final.read_bytes() == b"content"
    assert [p for p in (tmp_path / "uploads").iterdir() if p.is_file()] == []
