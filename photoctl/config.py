"""Settings: every configuration key with its default and meaning, and where its value came from.

The frozen dataclasses below are the one source of truth: ``config.example.ini`` and
``photoctl config show`` are generated from them. Values are layered, lowest first: defaults,
the ini file, ``PHOTOCTL_<SECTION>_<KEY>`` environment variables, the historic environment names
the service grew up with, and command-line options. ``validate`` turns a bad value into a
ConfigError that names the key and where the value came from. Reading the ini file and
converting text values is config_sources.py's.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photoctl.budget_syntax import parse_budget
from photoctl.config_sources import (
    absolute,
    convert,
    find_config_file,
    mask_password,
    parse_public_url,
    parse_trusted_proxies,
    read_ini,
)
from photoctl.config_sources import setting_key as _key
from photoctl.errors import ConfigError
from photoctl.storage_settings import StorageSettings, check_storage

DEFAULT_DATA_DIR = "photoctl-data"
ENGINE_NAMES = ("local", "rekognition", "none")
DETECTOR_NAMES = ("libfacedetection", "hog")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = _key(
        "",
        "SQLAlchemy URL; empty means the SQLite file photoctl.db in the data dir. "
        "postgresql://user@host/db uses psycopg 3.",
    )
    pool_size: int = _key(
        20, "PostgreSQL connection pool size per process", env="DB_POOL_SIZE", minimum=1
    )
    max_overflow: int = _key(
        50, "PostgreSQL connections allowed above pool_size", env="DB_MAX_OVERFLOW", minimum=0
    )
    pool_recycle_seconds: int = _key(
        1800, "Reconnect PostgreSQL connections older than this", minimum=1
    )
    pool_timeout_seconds: int = _key(60, "Wait this long for a pooled connection", minimum=1)
    busy_timeout_seconds: float = _key(
        30.0, "SQLite: wait this long for a lock before failing", minimum=0
    )


@dataclass(frozen=True)
class QueueSettings:
    workers: int = _key(
        3, "Worker processes started by `photoctl work`", env="PHOTO_QUEUE_WORKERS", minimum=1
    )
    max_size: int = _key(
        1000,
        "Uploads are refused (503) while this many jobs wait",
        env="PHOTO_QUEUE_MAX_SIZE",
        minimum=1,
    )
    max_attempts: int = _key(
        3, "Attempts before a job that keeps failing is marked failed", minimum=1
    )
    lease_seconds: float = _key(
        60.0,
        "A running job whose worker stopped heartbeating this long goes back to the queue",
        minimum=1,
    )
    claim_batch: int = _key(
        50,
        "Most jobs a worker claims in one statement (it claims one at a time while jobs are slow)",
        minimum=1,
    )
    retry_base_seconds: float = _key(
        2.0, "First retry delay; doubles each attempt, with jitter", minimum=0
    )
    retry_max_seconds: float = _key(300.0, "Longest retry delay", minimum=0)
    poll_seconds: float = _key(
        0.5, "Longest idle wait between claims when the queue is empty", minimum=0.01
    )
    shutdown_grace: float = _key(
        30.0,
        "Seconds workers get to finish in-hand jobs on SIGINT/SIGTERM before they are killed",
        minimum=0,
    )
    worker_nice: int = _key(
        10, "CPU niceness added to worker processes, so serve stays fast", minimum=0
    )


@dataclass(frozen=True)
class IngestSettings:
    max_bytes: int = _key(200 * 1024 * 1024, "Files larger than this are refused", minimum=1)
    max_pixels: int = _key(
        200_000_000, "Images with more pixels are refused as decompression bombs", minimum=1
    )
    settle_seconds: float = _key(
        2.0,
        "Files modified more recently are left for the next run (still being written)",
        minimum=0,
    )
    watch_interval_seconds: float = _key(5.0, "How often `ingest --watch` rescans", minimum=0.1)
    settle_wait_seconds: float = _key(
        60.0,
        "A one-shot ingest (not --watch) waits up to this long for files still being written "
        "to settle; what is still changing then is left for the next run",
        minimum=0,
    )
    ignore: str = _key(
        "@eaDir, #recycle, .thumbnails, $RECYCLE.BIN",
        "Comma-separated globs: files and folders whose name matches one (case-insensitively) "
        "are not ingested; `ingest --ignore GLOB` adds more",
    )


@dataclass(frozen=True)
class FacesSettings:
    engine: str = _key(
        "local", "Face engine: local (dlib), rekognition (AWS) or none", choices=ENGINE_NAMES
    )
    match_threshold: float = _key(
        0.6, "local engine: a face matches a user at this euclidean distance or less", minimum=0
    )
    min_face_percent: float = _key(
        2.0,
        "local engine: the smallest face to find, as a percentage of the photo's longest side "
        "(its width, for a landscape photo); sets the detection size and the decode size that "
        "faces are embedded from",
        minimum=0.5,
    )
    detector: str = _key(
        "libfacedetection",
        "local engine: face detector: libfacedetection (finds faces down to min_face_percent) "
        "or hog (dlib's HOG on the preview scaled to detect_px: faces under ~80 px are missed)",
        choices=DETECTOR_NAMES,
    )
    daily_budget: str = _key(
        "",
        "Billed face-service calls per UTC day, as calls (20000) or USD ($25 or 25 USD); once "
        "reached, workers claim no more photo jobs until the next UTC day or a raised budget "
        "(re-read from the config file). Empty: no budget",
        parse=parse_budget,
    )
    detect_px: int = _key(
        1024,
        "local engine, hog detector: faces are searched on the preview scaled to this longest side",
        minimum=64,
    )
    upsample: int = _key(
        0,
        "local engine, hog detector: upsample this many times to find smaller faces "
        "(each ~4x slower)",
        minimum=0,
    )


@dataclass(frozen=True)
class RekognitionSettings:
    region: str = _key("", "AWS region; empty means the usual AWS way (AWS_REGION, profile)")
    endpoint_url: str = _key("", "A Rekognition-compatible endpoint; empty means AWS")
    collection_id: str = _key("photoctl", "The face collection (created if missing)")
    max_concurrency: int = _key(
        10,
        "Calls in flight at most, across every process (and machine, on PostgreSQL)",
        env="AWS_CONCURRENT_REQUESTS",
        minimum=1,
    )
    max_tps: float = _key(
        5.0,
        "Calls started per second at most, across every process (and machine)",
        minimum=0.1,
    )
    match_threshold: float = _key(
        90.0, "Similarity (percent) from which a face matches a user", minimum=0
    )
    price_per_1000_calls: float = _key(
        1.0,
        "USD per 1,000 accepted IndexFaces/SearchFaces calls, for cost estimates (AWS's first "
        "tier in us-east-1: $0.001 an image)",
        minimum=0,
    )
    price_per_face_month: float = _key(
        0.00001,
        "USD per face stored in the collection per month, for cost estimates ($0.01 per 1,000)",
        minimum=0,
    )
    throttle_cooldown_seconds: float = _key(
        5.0,
        "Congestion (throttles that are not one isolated blip) lowers the shared rate by a "
        "third, once per burst; it recovers linearly to max_tps over this long, and a throttle "
        "meanwhile lowers it again",
        minimum=0.1,
    )


@dataclass(frozen=True)
class CacheSettings:
    dir: str = _key(
        "",
        "Response cache directory shared by every serve process and the CLI; "
        "empty means <data dir>/cache",
    )
    ttl_my_photos: float = _key(
        30.0, "Seconds a user's photo list stays cached (a new match drops it at once)", minimum=0
    )
    ttl_all_photos: float = _key(120.0, "Seconds a gallery page stays cached", minimum=0)
    size_limit_bytes: int = _key(
        512 * 1024 * 1024, "Largest size of the cache on disk", minimum=1024 * 1024
    )


@dataclass(frozen=True)
class ServeSettings:
    host: str = _key("127.0.0.1", "Address `photoctl serve` listens on")
    port: int = _key(8000, "Port `photoctl serve` listens on", minimum=1)
    workers: int = _key(1, "uvicorn worker processes", minimum=1)
    gallery: str = _key(
        "own",
        "own: users see only photos they appear in; users: every user sees the whole gallery",
        choices=("own", "users"),
    )
    upload_rate: str = _key("100/minute", "Uploads allowed per user (limits syntax)")
    login_rate: str = _key("10/minute", "Login attempts allowed per name and per address")
    login_token_ttl: float = _key(
        7 * 24 * 3600.0,
        "Seconds a token from /api/login stays valid (API tokens from the CLI do not expire)",
        minimum=1,
    )
    public_url: str = _key(
        "",
        "The address participants reach serve at (http:// or https://): the link they bookmark, "
        "the QR code's target, the prefix of thumb_url/preview_url; empty means relative URLs",
        parse=parse_public_url,
    )
    trusted_proxies: str = _key(
        "127.0.0.1,::1",
        "Reverse proxies (addresses or networks, comma-separated; empty: none) whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed: the client address rate limits "
        "count by is then the one the proxy saw",
        parse=parse_trusted_proxies,
    )
    selfie_rate: str = _key("5/minute", "Selfie posts allowed per user (limits syntax)")
    enroll_rate_per_address: str = _key(
        "60/minute",
        "Event enrollments allowed per client address (limits syntax). Hundreds of phones can "
        "share one address (a venue's Wi-Fi, a carrier's NAT), so this must let a whole "
        "finish-line surge through: a 2,000-runner race finishes at up to about 100 runners a "
        "minute, and if half of them enroll as they pass the poster that is 50 a minute, "
        "possibly all from one address. 60 a minute lets that through, holds one client to "
        "about one selfie a second, and makes a refused participant wait under a minute; "
        "guessing a 40-bit access code at that rate takes millennia",
    )
    enroll_rate_per_event: str = _key(
        "120/minute", "Event enrollments allowed per event, from everyone (limits syntax)"
    )
    bib_search_rate_per_address: str = _key(
        "30/minute;300/day",
        "Searches by bib number (an event page's search, its JSON twin, a bib added to a "
        "gallery) allowed per client address (limits syntax; several limits joined by ';' must "
        "all hold). A family looking up three runners, with a page or two each and a reload, "
        "makes about 20; a walk through every number of a 10,000-runner race from one address "
        "takes more than a month at 300 a day",
    )
    bib_search_rate_per_event: str = _key(
        "600/minute",
        "Searches by bib number allowed per event, from everyone (limits syntax): the bound on "
        "a walk from many addresses at once. A 10,000-runner race whose results mail reaches "
        "everyone in the same minute sees a few hundred searches a minute at most",
    )
    selfie_max_bytes: int = _key(
        32 * 1024 * 1024, "Selfies larger than this are refused (413)", minimum=1024
    )
    max_concurrent_decodes: int = _key(
        2,
        "Images (selfies) decoded at once per serve process; the rest wait, then get 503",
        minimum=1,
    )
    decode_wait_seconds: float = _key(
        20.0, "Seconds a selfie waits for a decode slot; then 503 with Retry-After", minimum=0.1
    )
    max_decode_pixels: int = _key(
        50_000_000,
        "Serve refuses to decode an image to more pixels than this (JPEGs count at their "
        "reduced decode size); decodes (counted at 6 bytes per decoded pixel) run side by side "
        "only while together they fit 4 bytes x this x max_concurrent_decodes",
        minimum=1_000_000,
    )
    body_timeout_seconds: float = _key(
        60.0,
        "Seconds a request's headers may take to arrive, and then its whole body; a slower "
        "one is cut off with 408 and its connection closed (raise it for large uploads on "
        "slow links)",
        minimum=1.0,
    )


@dataclass(frozen=True)
class EventsSettings:
    default_retention_days: int = _key(
        365,
        "Days face data of an event is kept after its date (or after it is closed, for an "
        "event without a date) when `events create` is given no --retention-days",
        minimum=1,
    )


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return number


@dataclass(frozen=True)
class BibsSettings:
    min_confidence: float = _key(
        0.8,
        "A bib read less sure than this (the mean probability of its characters, 0-1) is not "
        "stored",
        parse=_fraction,
    )
    detail_px: int = _key(
        3000,
        "local reader: photos are read at this longest side (a 24 MP JPEG's half-size draft); "
        "digits under about 12 px there are not read",
        minimum=500,
    )
    light_on_dark: bool = _key(
        False,
        "local reader: also look for white digits on dark or coloured cards (about doubles "
        "the reading's cost)",
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = _key("info", "Log level: debug, info, warning, error", choices=LOG_LEVELS)
    file: str = _key("", "Rotating log file shared by every process; empty means stderr only")
    max_bytes: int = _key(10 * 1024 * 1024, "Rotate the log file at this size", minimum=1024)
    backup_count: int = _key(5, "Rotated log files kept", minimum=0)
    format: str = _key(
        "text",
        "The log file's format: text lines, or json (one object per line with the fields "
        "time, pid, level, logger, message, and event, worker, job, photo where they apply)",
        choices=LOG_FORMATS,
    )
    progress_seconds: float = _key(
        30.0,
        "`photoctl work` without a terminal logs a progress line this often (a bar otherwise)",
        minimum=0.1,
    )


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "queue": QueueSettings,
    "ingest": IngestSettings,
    "faces": FacesSettings,
    "rekognition": RekognitionSettings,
    "storage": StorageSettings,
    "cache": CacheSettings,
    "serve": ServeSettings,
    "events": EventsSettings,
    "bibs": BibsSettings,
    "log": LogSettings,
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    config_file: Path | None = None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    faces: FacesSettings = field(default_factory=FacesSettings)
    rekognition: RekognitionSettings = field(default_factory=RekognitionSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    bibs: BibsSettings = field(default_factory=BibsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    # "section.key" -> where the effective value came from, for `config show`.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'photoctl.db').resolve()}"

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache.dir) if self.cache.dir else self.data_dir / "cache"

    @property
    def storage_root(self) -> Path:
        return Path(self.storage.root) if self.storage.root else self.data_dir / "storage"

    def storage_file(self, stored: str) -> Path:
        """A thumbnail, preview or upload path as stored in the database, made absolute.

        Storage paths are stored relative to the storage root, so every process finds them
        whatever its working directory; an absolute path (older rows) is used as it is.
        """
        return self.storage_root / stored

    def replace(self, section: str, **values: Any) -> Settings:
        """A copy with some keys of one section changed (tests and CLI options use it)."""
        updated = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **{section: updated})


def env_name(section: str, key: str) -> str:
    return f"PHOTOCTL_{section.upper()}_{key.upper()}"


def iter_keys() -> list[tuple[str, dataclasses.Field]]:
    """Every (section, field) pair, in documentation order."""
    return [(name, f) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


# The historic environment names the service grew up with (DB_POOL_SIZE, PHOTO_QUEUE_WORKERS,
# ...), read from the keys' metadata so that tests and benchmarks scrubbing the environment
# cannot miss one added later.
HISTORIC_ENV_NAMES: tuple[str, ...] = tuple(
    f.metadata["env"] for _section, f in iter_keys() if f.metadata.get("env")
)


def load(
    *,
    config_file: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated Settings from defaults, the ini file, the environment and options.

    ``overrides`` maps "section.key" to values given on the command line (None = not given).
    """
    env = os.environ if environ is None else environ
    # Absolute from the start: paths built from it (database, storage, cache) then mean the same
    # in every process, whatever directory serve, workers or cron run from.
    data_path = absolute(data_dir or env.get("PHOTOCTL_DATA_DIR") or DEFAULT_DATA_DIR)
    ini_path = find_config_file(config_file, data_path, env)
    parser = read_ini(ini_path, SECTIONS)

    sources: dict[str, str] = {}
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            dotted = f"{section}.{f.name}"
            value: Any = f.default  # every section field has a plain default, never a factory
            source = "default"
            layers: list[tuple[str | None, str]] = []
            if parser.has_option(section, f.name):
                layers.append((parser.get(section, f.name), f"file {ini_path} [{section}]"))
            layers.append((env.get(env_name(section, f.name)), f"env {env_name(section, f.name)}"))
            if f.metadata.get("env"):
                layers.append((env.get(f.metadata["env"]), f"env {f.metadata['env']}"))
            for raw, where in layers:
                if raw is not None:
                    value, source = convert(raw, f.type, f"{dotted} (from {where})"), where
            given = (overrides or {}).get(dotted)
            if given is not None:
                value, source = given, "command line"
            if dotted in _DIRECTORY_KEYS and value and "://" not in str(value):
                value = str(absolute(value))
            values[f.name] = value
            sources[dotted] = source
        sections[section] = cls(**values)
    settings = Settings(data_dir=data_path, config_file=ini_path, sources=sources, **sections)
    validate(settings)
    return settings


# Directory keys resolved against the working directory at start-up, like the data dir.
_DIRECTORY_KEYS = frozenset({"storage.root", "cache.dir"})


def validate(settings: Settings) -> None:
    """Raise ConfigError naming the first key whose value is out of range."""
    for section, f in iter_keys():
        value = getattr(getattr(settings, section), f.name)
        dotted = f"{section}.{f.name}"
        where = settings.sources.get(dotted, "default")
        minimum = f.metadata.get("minimum")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{dotted} must be at least {minimum}, got {value!r} (from {where})")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(
                f"{dotted} must be one of {', '.join(choices)}, got {value!r} (from {where})"
            )
        try:
            (f.metadata.get("parse") or str)(value)
        except ValueError as error:
            raise ConfigError(f"{dotted} {error} (from {where})") from None
    check_storage(settings.storage)
    url = settings.database.url
    if url and not re.match(r"^(sqlite|postgres(ql)?)(\+\w+)?://", url):
        raise ConfigError(
            f"database.url must be a sqlite:// or postgresql:// URL, got {mask_password(url)!r}"
        )


def describe(settings: Settings) -> list[tuple[str, Any, str]]:
    """(key, effective value, source) for every key, for `photoctl config show`.

    Passwords inside URLs are masked: the output ends up in tickets and chat.
    """
    rows: list[tuple[str, Any, str]] = [("data_dir", str(settings.data_dir), "")]
    for section, f in iter_keys():
        value = mask_password(getattr(getattr(settings, section), f.name))
        rows.append(
            (f"{section}.{f.name}", value, settings.sources.get(f"{section}.{f.name}", "default"))
        )
    return rows


def example_ini() -> str:
    """The text of config.example.ini, generated from the dataclasses above."""
    lines = [
        "# photoctl configuration. Every key is optional; shown with its default.",
        "# Each key can be overridden by the environment as PHOTOCTL_<SECTION>_<KEY>.",
        "",
    ]
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            doc = f.metadata["doc"]
            if f.metadata.get("env"):
                doc += f" (env {f.metadata['env']})"
            lines.append(f"# {doc}")
            lines.append(f"{f.name} = {f.default}")
        lines.append("")
    return "\n".join(lines)
