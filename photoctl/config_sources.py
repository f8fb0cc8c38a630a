"""Where configuration values come from: the ini file and text values made into typed ones.

config.py says which keys exist and layers their values (defaults, ini file, environment,
command line); this module holds what that layering needs and knows no key: finding and reading
the ini file (a syntax error is one line naming the file and the line, an unknown section or key
is an error), converting a text value to its key's type, making a path absolute, and masking
the password in a URL that is shown.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from photoctl.errors import ConfigError


def setting_key(
    default: Any,
    doc: str,
    *,
    env: str | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Any = None,  # a function of the value raising ValueError("must be ...")
) -> Any:
    """A settings dataclass field: its default, help text, historic env name and limits."""
    metadata = {"doc": doc, "env": env, "minimum": minimum, "choices": choices, "parse": parse}
    return dataclasses.field(default=default, metadata=metadata)


def find_config_file(
    explicit: str | None, data_dir: Path, environ: Mapping[str, str]
) -> Path | None:
    """The ini file to read: --config, PHOTOCTL_CONFIG, ./config.ini, <data dir>/config.ini."""
    chosen = explicit or environ.get("PHOTOCTL_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    for candidate in (Path("config.ini"), data_dir / "config.ini"):
        if candidate.is_file():
            return candidate
    return None


def read_ini(ini_path: Path | None, sections: Mapping[str, type]) -> configparser.ConfigParser:
    """The parsed ini file (empty without one); ConfigError for bad syntax or unknown keys.

    ``sections`` maps each section name to its settings dataclass, whose fields are its keys.
    """
    parser = configparser.ConfigParser(interpolation=None)
    if ini_path is not None:
        try:
            parser.read(ini_path, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(_syntax_error(ini_path, exc)) from None
        _check_unknown_keys(parser, ini_path, sections)
    return parser


def _check_unknown_keys(
    parser: configparser.ConfigParser, ini_path: Path, sections: Mapping[str, type]
) -> None:
    # A misspelt key would otherwise be ignored in silence, and its default used.
    for section in parser.sections():
        if section not in sections:
            raise ConfigError(
                f"{ini_path}: unknown section [{section}] (known: {', '.join(sections)})"
            )
        known = {f.name for f in dataclasses.fields(sections[section])}
        for key in parser.options(section):
            if key not in known:
                raise ConfigError(f"{ini_path}: unknown key {section}.{key}")


def _syntax_error(ini_path: Path, error: configparser.Error) -> str:
    """One line naming the file and the line, whatever configparser's own message looks like."""
    where = str(ini_path.resolve())
    if isinstance(error, configparser.MissingSectionHeaderError):
        line = _unquote(error.line)
        return f"{where}, line {error.lineno}: expected a [section] header, got {line!r}"
    if isinstance(error, configparser.ParsingError) and error.errors:
        lineno, line = error.errors[0]
        return f"{where}, line {lineno}: cannot parse {_unquote(line)!r} (expected key = value)"
    if isinstance(error, configparser.DuplicateOptionError):
        return (
            f"{where}, line {error.lineno}: key {error.option!r} given twice in [{error.section}]"
        )
    if isinstance(error, configparser.DuplicateSectionError):
        return f"{where}, line {error.lineno}: section [{error.section}] given twice"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{where}: cannot parse: {first}"


def _unquote(line: str) -> str:
    # configparser keeps some offending lines as their repr(): show the line as written.
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        value = line
    return (value if isinstance(value, str) else line).strip()


def convert(raw: str, kind: Any, where: str) -> Any:
    """``raw`` as the key's type (int, float, bool or str); ConfigError saying ``where``."""
    kind_name = kind if isinstance(kind, str) else kind.__name__
    text = raw.strip()
    try:
        if kind_name == "int":
            return int(text.replace("_", ""))
        if kind_name == "float":
            return float(text)
        if kind_name == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
    except ValueError:
        article = "an" if kind_name == "int" else "a"
        word = {"int": "integer", "float": "number", "bool": "boolean"}[kind_name]
        raise ConfigError(f"{where}: expected {article} {word}, got {raw!r}") from None
    return text


def absolute(path: str | Path) -> Path:
    """An absolute, normalised path (symlinks kept: the operator's names stay recognisable)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?=@)")


def mask_password(value: Any) -> Any:
    """A URL with its password replaced by ***; any other value unchanged."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***", value)
    return value


def parse_trusted_proxies(value: str) -> list[str]:
    """``serve.trusted_proxies``: comma-separated addresses or networks; empty: none.

    Raises ValueError("must be ...") naming the item that is neither, so a typo is not a proxy
    silently distrusted. Networks are strict (``10.0.0.0/8``, not ``10.0.0.1/8``), as uvicorn
    reads them: it takes anything else for a literal and never matches it. ``*`` is refused:
    uvicorn then takes the leftmost X-Forwarded-For address, which the client writes itself.
    """
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if item == "*":
            raise ValueError(
                "must list the proxies' addresses or networks: with * any client could choose "
                "the address rate limits count it by"
            )
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise ValueError(
                f"must list IP addresses or networks (such as 10.0.0.0/8), separated by "
                f"commas; {item!r} is neither"
            ) from None
    return items


def parse_public_url(value: str) -> str:
    """``serve.public_url``: empty, or an http(s) address with a host (what `events qr`
    encodes and participants bookmark); ValueError("must be ...") otherwise, so that doctor and
    every command refuse what `events qr` would."""
    base = value.strip().rstrip("/")
    # No query or fragment (page paths are appended to it), no space, quote or angle bracket
    # (it goes into pages and QR codes as it is).
    if base and not re.fullmatch(r"https?://[^/\s?#\"'<>\\]+(/[^\s\"'<>\\?#]*)?", base):
        raise ValueError(
            "must be the address participants reach serve at: http:// or https://, a host, "
            "maybe a path, no query, fragment, space or quote (e.g. https://photos.example.org), "
            f"got {value!r}"
        )
    return base
