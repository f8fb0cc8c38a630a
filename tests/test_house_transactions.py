"""The transaction rule of db.py, checked on the source (issue 9 items 1 and 4).

Query modules take a Connection and never commit; services take an Engine and own their
transactions; no function takes both to learn the dialect. The face seam: one name per thing,
and the engine interface declares what faces.make_engine calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from photoctl.faces.base import FaceEngine

PACKAGE = Path(__file__).resolve().parent.parent / "photoctl"
# Modules of queries only: each function runs in the caller's transaction.
QUERY_MODULES = ("catalog", "face_store", "gallery", "queue", "workers_registry")


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _parameter_types(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[set[str]]:
    """The names in each parameter's annotation."""
    arguments = function.args
    return [
        {
            node.id if isinstance(node, ast.Name) else node.attr
            for node in ast.walk(argument.annotation)
            if isinstance(node, ast.Name | ast.Attribute)
        }
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        if argument.annotation is not None
    ]


def _takes_a_connection_and_an_engine(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """One parameter a Connection, another an Engine (``Connection | Engine`` is one bind)."""
    types = _parameter_types(function)
    return any(
        "Connection" in first and "Engine" in second
        for i, first in enumerate(types)
        for j, second in enumerate(types)
        if i != j
    )


def test_no_function_takes_both_a_connection_and_an_engine() -> None:
    both = [
        f"{path.relative_to(PACKAGE.parent)}:{function.lineno} {function.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for function in _functions(path)
        if _takes_a_connection_and_an_engine(function)
    ]
    assert both == []


@pytest.mark.parametrize("module", QUERY_MODULES)
def test_query_modules_take_connections_and_never_open_or_commit_a_transaction(
    module: str,
) -> None:
    source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    opened = [
        f"{module}.py:{node.lineno}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr in {"write", "read", "begin", "commit", "connect"}
    ]
    assert opened == []
    for function in _functions(PACKAGE / f"{module}.py"):
        takes_engine = any("Engine" in names for names in _parameter_types(function))
        assert not takes_engine, f"{module}.{function.name}"


def test_the_face_step_protocol_and_its_implementation_have_different_names() -> None:
    from photoctl import face_step, pipeline

    assert face_step.EngineFaceStep is not pipeline.FaceStep
    assert not hasattr(face_step, "FaceStep") or face_step.FaceStep is pipeline.FaceStep


def test_a_face_engine_without_from_settings_cannot_be_made() -> None:
    class Incomplete(FaceEngine):
        name = "incomplete"

        def index_photo(self, photo_id, image):
            return []

        def index_selfie(self, user_id, image, *, allow_several=True):
            return None

        def match_faces(self, faces, enrolled):
            return []

        def match_selfie(self, selfie, lookup):
            return []

        def check(self) -> str:
            return "ok"

    with pytest.raises(TypeError, match="from_settings"):
        Incomplete()
