"""serve.public_url is checked once, when the settings load (issue 20, item 25): `doctor`
accepted `photos.example.org`, which `events qr` then refused."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import photoctl_env, run_photoctl


@pytest.mark.parametrize(
    "bad",
    [
        "photos.example.org",
        "ftp://photos.example.org",
        "https://",
        "https://photos.example.org/?event=1",
        'https://photos.example.org/"><script>',
    ],
)
def test_a_public_url_that_is_not_http_is_refused_by_every_command_naming_the_key(
    tmp_path, bad
) -> None:
    env = photoctl_env(tmp_path)
    assert run_photoctl(["init"], env).returncode == 0
    (tmp_path / "data" / "config.ini").write_text(f"[serve]\npublic_url = {bad}\n")

    for command in (["stats"], ["events", "qr", "default", "--out", str(tmp_path / "q.png")]):
        refused = run_photoctl(command, env)
        assert refused.returncode == 2, refused.stderr
        assert "serve.public_url must be the address participants reach serve at" in (
            refused.stderr
        )
        assert "config.ini [serve]" in refused.stderr, "says where the value came from"
    doctor = run_photoctl(["doctor", "--json"], env)
    assert doctor.returncode == 1
    checks = json.loads(doctor.stdout)["checks"]
    assert [c["name"] for c in checks if not c["ok"]] == ["config"]
    assert "serve.public_url" in checks[0]["detail"]


def test_a_public_url_with_a_path_or_a_trailing_slash_is_accepted(tmp_path) -> None:
    env = photoctl_env(tmp_path, PHOTOCTL_SERVE_PUBLIC_URL="https://example.org/photos/")
    assert run_photoctl(["init"], env).returncode == 0
    made = run_photoctl(["events", "qr", "default", "--out", str(tmp_path / "q.png")], env)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "https://example.org/photos/e/default"
