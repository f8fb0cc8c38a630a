"""No request can land in another request's cache entry: keys are typed parts in JSON, so a
client cannot spell one (``?album=None`` was the key of "no album" while keys were formatted).
Through a real `photoctl serve` on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.photos import write_photo
from tests.support.cli import photoctl_env, run_photoctl
from tests.support.serve import start_server, stop_server


def filenames(client, **params: object) -> list[str]:
    answer = client.get("/api/all-photos", params=params)
    assert answer.status_code == 200, answer.text
    return sorted(photo["filename"] for photo in answer.json()["photos"])


@pytest.mark.parametrize("album", ["None", "null"])
def test_an_album_named_like_no_album_or_another_key_gets_its_own_cache_entry(
    tmp_path: Path, db_url: str, album: str
) -> None:
    env = photoctl_env(tmp_path, db_url)
    write_photo(tmp_path / "loose" / "loose.jpg", seed=1)
    write_photo(tmp_path / "named" / "named.jpg", seed=2)
    for args in (
        ["ingest", str(tmp_path / "loose")],
        ["ingest", str(tmp_path / "named"), "--album", album],
        ["--engine", "none", "work", "-n", "1", "--until-empty"],
    ):
        done = run_photoctl(args, env)
        assert done.returncode == 0, done.stderr
    added = run_photoctl(["users", "add", "admin", "--admin"], env)
    assert added.returncode == 0, added.stderr
    server = start_server(tmp_path, db_url)
    try:
        with server.client(added.stdout.strip()) as client:
            # The album first, then no album: the second must not get the first's list.
            assert filenames(client, album=album, limit=10) == ["named.jpg"]
            assert filenames(client, limit=10) == ["loose.jpg", "named.jpg"]
            # The other way round, on entries of their own (another limit).
            assert filenames(client, limit=20) == ["loose.jpg", "named.jpg"]
            assert filenames(client, album=album, limit=20) == ["named.jpg"]
    finally:
        stop_server(server)
