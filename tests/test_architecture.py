"""The house rules that keep inspekt walkable, checked on the source itself (the import layers and
"no cycles" are import-linter's contracts in pyproject.toml, run by ``make lint``):

* modules of at most 400 lines and functions of at most 60 lines of code (after the signature and
  docstring), with a short, commented allow-list;
* no comparison with a task's name outside ``inspekt/tasks``: the modes look the task up in the
  registry (``inspekt.tasks.get_task``) and ask it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from inspekt.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "inspekt"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Justified exceptions, each with a comment giving its reason. Keep these lists short (empty today).
LONG_FUNCTIONS: set[tuple[str, str]] = set()
LONG_MODULES: set[str] = set()


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1 if body else 0


def test_modules_stay_small():
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert set(long) <= LONG_MODULES, f"modules over {MAX_MODULE_LINES} lines: {long}; split them"


def test_functions_stay_small():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(node) > MAX_FUNCTION_LINES:
                long[(str(path.relative_to(SRC)), node.name)] = _code_lines(node)
    assert set(long) <= LONG_FUNCTIONS, f"functions over {MAX_FUNCTION_LINES} lines of code: {long}; split them"


def _task_name_comparisons(tree: ast.AST) -> list[int]:
    """Lines that route on a task's name: comparisons (``card.task == "segment"``, ``task in ("a", "b")``),
    ``match`` cases, and dicts keyed by task names (``{"segment": f, ...}[task]``)."""
    names = set(TASKS)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = list(ast.walk(node))
        elif isinstance(node, ast.MatchValue):
            parts = [node.value]
        elif isinstance(node, ast.Dict):
            parts = [k for k in node.keys if k is not None]
        else:
            continue
        if any(isinstance(c, ast.Constant) and c.value in names for c in parts):
            found.append(node.lineno)
    return found


# Data keyed by task name that is not routing, each with its reason.
TASK_KEYED_DATA = {
    "demo.py",  # DEMO_DATA: which of the demo's generated datasets suits each task (the Train page's default)
}


def test_no_task_branches_outside_the_registry():
    found = {}
    for path in _modules():
        if path.is_relative_to(SRC / "tasks") or str(path.relative_to(SRC)) in TASK_KEYED_DATA:
            continue
        lines = _task_name_comparisons(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            found[str(path.relative_to(SRC))] = lines
    assert not found, f"task-name branches outside inspekt/tasks (ask the task instead): {found}"


@pytest.mark.parametrize(
    "code",
    [
        'if card.task == "segment":\n    pass',
        'x = task in ("segment", "anomaly")',
        'y = "classify" != cfg.task',
        'f = {"segment": g, "anomaly": h}.get(task)',
        'match task:\n    case "anomaly":\n        pass',
    ],
)
def test_the_branch_check_finds_task_branches(code):
    assert _task_name_comparisons(ast.parse(code))


def test_every_task_folder_is_registered_once():
    folders = {p.name for p in (SRC / "tasks").iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(TASKS)
    assert all(task.name == name for name, task in TASKS.items())


def test_the_modes_and_the_registry_import_without_torch():
    """Serving (ONNX) and the fronts' start-up stay light: torch loads when a network is built or trained."""
    import subprocess
    import sys

    modules = "inspekt.tasks, inspekt.engine.predictor, inspekt.engine.trainer, inspekt.engine.evaluator, inspekt.demo"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
