"""Configuration layers, validation messages, and the generated example file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from photoctl import config
from photoctl.cli import cli
from photoctl.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_layers_apply_in_order_default_file_env_historic_option(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[queue]\nworkers = 4\nmax_size = 10\nmax_attempts = 5\n")
    environ = {
        "PHOTOCTL_QUEUE_WORKERS": "6",
        "PHOTOCTL_QUEUE_MAX_SIZE": "20",
        "PHOTO_QUEUE_MAX_SIZE": "30",
        "DB_POOL_SIZE": "7",
    }
    settings = config.load(config_file=str(ini), environ=environ, overrides={"queue.workers": 8})
    assert settings.queue.workers == 8
    assert settings.sources["queue.workers"] == "command line"
    assert settings.queue.max_size == 30
    assert settings.sources["queue.max_size"] == "env PHOTO_QUEUE_MAX_SIZE"
    assert settings.queue.max_attempts == 5
    assert settings.sources["queue.max_attempts"] == f"file {ini} [queue]"
    assert settings.database.pool_size == 7
    assert settings.queue.lease_seconds == 60.0
    assert settings.sources["queue.lease_seconds"] == "default"


def test_config_ini_in_working_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "config.ini").write_text("[faces]\nengine = none\n")
    assert config.load(environ={}).faces.engine == "none"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"PHOTOCTL_QUEUE_WORKERS": "many"},
            "queue.workers (from env PHOTOCTL_QUEUE_WORKERS): expected an integer, got 'many'",
        ),
        ({"PHOTOCTL_QUEUE_MAX_ATTEMPTS": "0"}, "queue.max_attempts must be at least 1, got 0"),
        (
            {"PHOTOCTL_FACES_ENGINE": "magic"},
            "faces.engine must be one of local, rekognition, none",
        ),
        ({"PHOTOCTL_DATABASE_URL": "mysql://x/y"}, "database.url must be a sqlite:// or "),
        (
            {"PHOTOCTL_SERVE_TRUSTED_PROXIES": "10.0.0.1, proxy.internal"},
            "serve.trusted_proxies must list IP addresses or networks (such as 10.0.0.0/8), "
            "separated by commas; 'proxy.internal' is neither",
        ),
        (  # uvicorn would take it for a literal and never match it
            {"PHOTOCTL_SERVE_TRUSTED_PROXIES": "10.0.0.1/8"},
            "'10.0.0.1/8' is neither",
        ),
        (
            {"PHOTOCTL_SERVE_TRUSTED_PROXIES": "*"},
            "with * any client could choose the address rate limits count it by",
        ),
    ],
)
def test_bad_values_name_the_key_and_their_source(environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.load(environ=environ)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    ini = tmp_path / "x.ini"
    ini.write_text("[queue]\nworkerz = 3\n")
    with pytest.raises(ConfigError, match="unknown key queue.workerz"):
        config.load(config_file=str(ini), environ={})


def test_bad_configuration_exits_2_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOCTL_QUEUE_LEASE_SECONDS", "soon")
    result = CliRunner().invoke(cli, ["stats"])
    assert result.exit_code == 2
    assert "queue.lease_seconds" in result.stderr and "soon" in result.stderr


def test_missing_config_file_exits_2() -> None:
    result = CliRunner().invoke(cli, ["--config", "nope.ini", "stats"])
    assert result.exit_code == 2 and "nope.ini does not exist" in result.stderr


def test_config_show_prints_each_value_and_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_QUEUE_WORKERS", "9")
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 0
    assert "queue.workers = 9    (env PHOTO_QUEUE_WORKERS)" in result.stdout
    assert "queue.max_attempts = 3    (default)" in result.stdout


def test_dotenv_fills_unset_variables_without_overriding(tmp_path: Path) -> None:
    from tests.support.cli import photoctl_env, run_photoctl

    (tmp_path / ".env").write_text("PHOTO_QUEUE_WORKERS=5\nPHOTOCTL_QUEUE_MAX_SIZE=77\n")
    env = photoctl_env(tmp_path, PHOTOCTL_QUEUE_MAX_SIZE="88")
    result = run_photoctl(["config", "show"], env, cwd=tmp_path)
    assert "queue.workers = 5    (env PHOTO_QUEUE_WORKERS)" in result.stdout
    assert "queue.max_size = 88" in result.stdout


def test_config_example_ini_is_generated_from_the_settings() -> None:
    assert (REPO / "config.example.ini").read_text() == config.example_ini(), (
        "regenerate with: photoctl config example > config.example.ini"
    )
