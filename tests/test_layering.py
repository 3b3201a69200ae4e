"""The layering rules of the zoo, checked on the import statements of every module (including imports
inside functions)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
FAMILIES = ("jasper", "deepspeech2", "dscnn")
ENTRY_SCRIPTS = {p.stem for p in REPO.glob("*.py")}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def offending(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imports(path) if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("family", FAMILIES + ("base",))
def test_models_import_no_data_training_text_or_audio_code(family):
    path = SRC / "models" / f"{family}.py"
    assert offending(path, ("src.data", "src.training", "src.text", "src.audio", "src.tasks", "src.deploy")) == []


def test_training_names_no_task_or_family():
    for path in (SRC / "training").glob("*.py"):
        bad = offending(path, ("src.tasks.asr", "src.tasks.kws", *(f"src.models.{f}" for f in FAMILIES),
                               "src.data", "src.text", "src.decoding"))
        assert bad == [], path.name


def test_deployment_reaches_models_through_the_registry():
    for path in (SRC / "deploy").glob("*.py"):
        assert offending(path, tuple(f"src.models.{f}" for f in FAMILIES)) == [], path.name


def test_nothing_in_src_imports_an_entry_script_or_utils():
    for path in SRC.rglob("*.py"):
        names = imports(path)
        assert not {n.split(".")[0] for n in names} & (ENTRY_SCRIPTS | {"utils", "bench", "tests"}), path


def test_the_registry_lists_every_family():
    from src.models import list_models
    assert list_models() == sorted(FAMILIES)
