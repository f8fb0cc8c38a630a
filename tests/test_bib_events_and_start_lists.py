"""Events that read bibs, start lists, and what a purge leaves of them (issue 21, items 1 and 8),
through the real CLI on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy
from sqlalchemy import select

from photoctl.models import StartListEntry
from tests.support.cli import photoctl_env, run_photoctl


def shown(env, slug: str) -> dict:
    done = run_photoctl(["events", "show", slug, "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start_list(db_url: str) -> list[tuple[int, str, str | None]]:
    engine = sqlalchemy.create_engine(db_url)
    try:
        with engine.connect() as conn:
            table = StartListEntry.__table__
            rows = conn.execute(select(table.c.event_id, table.c.bib, table.c.name))
            return sorted((row[0], row[1], row[2]) for row in rows)
    finally:
        engine.dispose()


def test_events_create_and_edit_switch_bibs_range_pattern_and_search(tmp_path, db_url) -> None:
    env = photoctl_env(tmp_path, db_url)
    made = run_photoctl(
        ["events", "create", "city-10k", "--title", "City 10K", "--bibs",
         "--bib-range", "100-2999", "--bib-search", "code", "--json"],
        env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    event = json.loads(made.stdout)
    assert (event["bibs"], event["bib_range"], event["bib_search"]) == (True, "100-2999", "code")
    assert (
        "bibs: on (without a start list: 100-2999); search by bib: code"
        in run_photoctl(["events", "show", "city-10k"], env).stdout
    )

    plain = run_photoctl(["events", "create", "plain", "--title", "Plain", "--json"], env)
    assert json.loads(plain.stdout)["bibs"] is False, "bibs are off unless asked for"

    edited = run_photoctl(
        ["events", "edit", "plain", "--bibs", "on", "--bib-pattern", "[A-Z][0-9]{1,4}",
         "--bib-search", "off"],
        env,
    )  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    after = shown(env, "plain")
    assert (after["bibs"], after["bib_pattern"], after["bib_search"]) == (
        True,
        "[A-Z][0-9]{1,4}",
        "off",
    )
    assert run_photoctl(["events", "edit", "plain", "--bibs", "off"], env).returncode == 0
    assert shown(env, "plain")["bibs"] is False

    for bad, words in [
        (["--bib-range", "9999-1"], "ends before it starts"),
        (["--bib-range", "lots"], "is not FIRST-LAST"),
        (["--bib-pattern", "[A-"], "is not a regular expression"),
        (["--bib-search", "everyone"], "everyone"),
    ]:
        refused = run_photoctl(["events", "edit", "city-10k", *bad], env)
        assert refused.returncode == 2, (bad, refused.stderr)
        assert words in refused.stderr
    assert shown(env, "city-10k")["bib_range"] == "100-2999", "a refused edit changes nothing"


def test_a_start_list_import_names_bad_rows_by_line_and_replaces_the_old_list(
    tmp_path: Path, db_url
) -> None:
    env = photoctl_env(tmp_path, db_url)
    assert (
        run_photoctl(["events", "create", "run", "--title", "Run", "--bibs"], env).returncode == 0
    )
    first = tmp_path / "first.csv"
    first.write_text("Bib,Name\n101,Ann Runner\n0102,Bob Walker\nA7,\n", encoding="utf-8")
    done = run_photoctl(["bibs", "import", "run", str(first)], env)
    assert done.returncode == 0, done.stderr
    assert "3 runners, 2 with a name" in done.stderr
    assert "Ann" not in done.stderr + done.stdout, "names are never shown"
    assert [(bib, name) for _, bib, name in start_list(db_url)] == [
        ("101", "Ann Runner"),
        ("102", "Bob Walker"),
        ("A7", None),
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text("bib;name\n200;Cat\n;No Bib\n200;Again\nten;Dee\n", encoding="utf-8")
    refused = run_photoctl(["bibs", "import", "run", str(bad)], env)
    assert refused.returncode == 1
    assert "line 3: no bib" in refused.stderr
    assert "line 4: bib 200 is on line 2 already" in refused.stderr
    assert "line 5: not a bib" in refused.stderr
    assert "ten" not in refused.stderr, "a cell that is not a bib may be a name: never shown"
    assert "nothing imported" in refused.stderr
    assert "Dee" not in refused.stderr and "Cat" not in refused.stderr
    assert len(start_list(db_url)) == 3, "a bad file leaves the list as it was"

    second = tmp_path / "second.csv"
    second.write_text("bib\n300\n301\n", encoding="utf-8")
    replaced = run_photoctl(["bibs", "import", "run", str(second)], env)
    assert replaced.returncode == 0, replaced.stderr
    assert "replacing 3 runners" in replaced.stderr
    assert [(bib, name) for _, bib, name in start_list(db_url)] == [("300", None), ("301", None)]

    for args, code, words in [
        (["bibs", "import", "nope", str(second)], 2, "no event 'nope'"),
        (["bibs", "import", "run", str(tmp_path / "missing.csv")], 2, "does not exist"),
    ]:
        answer = run_photoctl(args, env)
        assert (answer.returncode, words in answer.stderr) == (code, True), answer.stderr
    no_column = tmp_path / "numbers.csv"
    no_column.write_text("number,name\n1,A\n", encoding="utf-8")
    answer = run_photoctl(["bibs", "import", "run", str(no_column)], env)
    assert answer.returncode == 2 and "no `bib` column" in answer.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes("bib,name\n1,Jos\xe9\n".encode("latin-1"))
    answer = run_photoctl(["bibs", "import", "run", str(latin)], env)
    assert answer.returncode == 2 and "not UTF-8" in answer.stderr


def test_purging_an_event_deletes_its_start_list_names(tmp_path: Path, db_url) -> None:
    env = photoctl_env(tmp_path, db_url)
    for slug in ("gone", "kept"):
        assert (
            run_photoctl(["events", "create", slug, "--title", slug, "--bibs"], env).returncode == 0
        )
        names = tmp_path / f"{slug}.csv"
        names.write_text(f"bib,name\n1,{slug} Ann\n2,{slug} Bob\n", encoding="utf-8")
        assert run_photoctl(["bibs", "import", slug, str(names)], env).returncode == 0
    purged = run_photoctl(["events", "purge", "gone", "--yes", "--json"], env)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["start_list_names"] == 2
    assert "gone Ann" not in purged.stderr
    rows = start_list(db_url)
    assert [(bib, name) for _, bib, name in rows if name is None] == [("1", None), ("2", None)]
    assert sorted(name for _, _, name in rows if name) == ["kept Ann", "kept Bob"]
    audit = run_photoctl(["audit", "--event", "gone", "--json"], env).stdout
    assert "Ann" not in audit and "start_list_names" in audit
