"""The seams of the house (issue 9): imports point one way, modules stay small, serve builds its
face engine once per process, and the gallery rule lives in one place.

The import checks read the source (every import, those inside functions included: an import
moved into a function to survive a circle is still a circle) and import each module in a
fresh interpreter, where a circle shows up as "partially initialized module".
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from photoctl import users
from photoctl.api.deps import Caller, only_photos_of
from photoctl.config import Settings
from testkit.fake_rekognition import FakeRekognition, make_face_image
from tests.support import MAX_MODULE_LINES
from tests.support.serve import start_server, stop_server

PACKAGE = Path(__file__).resolve().parent.parent / "photoctl"
README = PACKAGE.parent / "README.md"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    # No ~/.aws/config of the machine running the tests may supply a region.
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the photoctl package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The photoctl modules ``name`` imports anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            # `from a import b` imports the module a.b when there is one, else a name of a.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        out.update(target for target in targets if target in modules and target != name)
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_photoctl_modules_import_each_other_in_a_circle() -> None:
    modules = _modules()
    graph = {name: _imported(name, path, modules) for name, path in modules.items()}
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_circle_through_an_import_inside_a_function() -> None:
    # The check above must not pass by finding nothing at all.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def _libraries() -> list[str]:
    """Every module outside photoctl that a photoctl module imports at its top level."""
    found = set()
    for path in _modules().values():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module)
    return sorted(name for name in found if name.split(".")[0] != "photoctl")


def test_every_photoctl_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    names = [
        name
        for name in _modules()
        if not name.startswith("photoctl.migrations.") and name != "photoctl.__main__"
    ]
    # One interpreter loads the libraries once, then forks a child per module: each child
    # starts with no photoctl module loaded, as a fresh interpreter would, and costs only the
    # import of photoctl's own code.
    script = textwrap.dedent(
        """
        import importlib, os, sys, traceback
        libraries, names = sys.argv[1].split(), sys.argv[2:]
        for library in libraries:
            try:
                importlib.import_module(library)
            except ImportError:
                pass  # an optional library (boto3): the module under test reports it
        assert not [m for m in sys.modules if m.split(".")[0] == "photoctl"]
        failed, running = [], {}
        for name in names:
            if len(running) >= (os.cpu_count() or 1):
                pid, status = os.wait()
                if status != 0:
                    failed.append(running[pid])
                del running[pid]
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            running[pid] = name
        for pid, name in running.items():
            if os.waitpid(pid, 0)[1] != 0:
                failed.append(name)
        print("failed:", " ".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, " ".join(_libraries()), *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]


def test_no_photoctl_module_is_over_800_lines() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    assert {name: lines for name, lines in sizes.items() if lines >= MAX_MODULE_LINES} == {}


def test_the_readme_layout_names_every_module() -> None:
    """The README's "How it is built" is where a newcomer finds what a module is for: each is
    named there.
    Route modules and Alembic's files are covered by their folders' lines."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## How it is built") :]
    section = section[: section.index("\n## ", 1)]
    unnamed = [
        name
        for name, path in _modules().items()
        if path.name not in ("__init__.py", "__main__.py")
        and not name.startswith(("photoctl.api.routes.", "photoctl.migrations."))
        and path.stem not in section
    ]
    assert unnamed == []


@pytest.mark.parametrize(
    ("is_admin", "gallery", "expected"),
    [(False, "own", 7), (False, "users", None), (True, "own", None), (True, "users", None)],
)
def test_the_gallery_rule_lets_admins_and_users_galleries_see_every_photo(
    is_admin: bool, gallery: str, expected: int | None
) -> None:
    caller = Caller(id=7, name="someone", is_admin=is_admin)
    assert only_photos_of(caller, Settings().replace("serve", gallery=gallery)) == expected


def test_serve_builds_its_rekognition_engine_once_not_per_selfie(
    tmp_path: Path,
    db_url: str,
    engine: Engine,
) -> None:
    colours = [(255, 0, 0), (0, 0, 255), (0, 153, 0)]
    tokens = [users.add_user(engine, f"guest{index}")[1] for index in range(len(colours))]
    with FakeRekognition() as fake:
        server = start_server(
            tmp_path,
            db_url,
            PHOTOCTL_FACES_ENGINE="rekognition",
            PHOTOCTL_REKOGNITION_ENDPOINT_URL=fake.endpoint_url,
            PHOTOCTL_REKOGNITION_REGION="eu-west-1",
            **AWS_ENV,
        )
        try:
            for token, colour in zip(tokens, colours, strict=True):
                answer = httpx.post(
                    f"{server.url}/api/me/selfie",
                    headers={"Authorization": f"Bearer {token}"},
                    files={"file": ("me.jpg", make_face_image([colour]))},
                    timeout=60,
                )
                assert answer.status_code == 200, answer.text
        finally:
            stop_server(server)
        operations = [record.operation for record in fake.records]
    assert operations.count("IndexFaces") == len(colours)
    # A new engine per request asked for the collection again on every selfie.
    assert operations.count("CreateCollection") == 1


def test_a_face_engine_that_cannot_be_built_refuses_selfies_but_serve_runs(
    tmp_path: Path,
    db_url: str,
    engine: Engine,
) -> None:
    _, token = users.add_user(engine, "guest")
    server = start_server(
        tmp_path,
        db_url,
        PHOTOCTL_FACES_ENGINE="rekognition",
        AWS_REGION="",
        AWS_DEFAULT_REGION="",
        **AWS_ENV,
    )
    try:
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.post(
            f"{server.url}/api/me/selfie",
            headers=headers,
            files={"file": ("me.jpg", make_face_image([(255, 0, 0)]))},
            timeout=60,
        )
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("face engine unavailable: no AWS region")
        mine = httpx.get(f"{server.url}/api/my-photos", headers=headers, timeout=30)
        assert mine.status_code == 200 and mine.json()["photos"] == []
    finally:
        stop_server(server)
