"""The package's arrows point one way (see the README's layout): each module imports only the ones
below it. Read from the source, so an import inside a function counts too."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "distilcache"

# module (a folder or a file under distilcache/) -> the distilcache modules it may import
ALLOWED = {
    "lazy": set(),  # the packages' lazy attributes: any package may use it
    "cache_format": set(),
    "inputs": {"cache_format"},
    "pairs": {"cache_format"},
    "hf_local": {"cache_format"},
    "devices": {"cache_format"},
    "weighting": {"cache_format"},
    "teacher": {"cache_format", "hf_local", "devices", "inputs", "weighting"},
    "student": {"cache_format", "hf_local", "inputs", "weighting"},
    "train": {"cache_format", "hf_local", "devices", "pairs", "student", "weighting"},
    "precompute": {"cache_format", "hf_local", "devices", "inputs", "weighting", "teacher"},
    "evaluate": {"cache_format", "devices", "inputs", "pairs", "weighting", "teacher", "student"},
}
THIRD_PARTY_FORBIDDEN = {"cache_format": {"torch", "transformers"}, "weighting": {"torch", "transformers"},
                         "inputs": {"torch", "transformers"}, "pairs": {"torch", "transformers"}}


def _imports(path: Path) -> set[str]:
    """Every module the file imports at run time (imports for type checkers only are left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for inner in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "distilcache":  # from distilcache import hf_local
                names |= {f"distilcache.{alias.name}" for alias in node.names}
    return names


def _files(module: str) -> list[Path]:
    folder = PACKAGE / module
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{module}.py"]


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_each_module_imports_only_the_ones_below_it(module):
    for path in _files(module):
        imported = _imports(path)
        ours = {name.split(".")[1] for name in imported if name.startswith("distilcache.")} - {module, "lazy"}
        assert ours <= ALLOWED[module], f"{path.relative_to(PACKAGE)} imports {sorted(ours - ALLOWED[module])}"
        top = {name.split(".")[0] for name in imported}
        assert not top & THIRD_PARTY_FORBIDDEN.get(module, set()), f"{path.relative_to(PACKAGE)} imports {top & THIRD_PARTY_FORBIDDEN[module]}"


def test_every_module_is_placed():
    modules = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert modules - {"__init__", "cli", "demo"} == set(ALLOWED)


def test_loading_a_student_loads_neither_training_nor_the_teacher_pass():
    code = ("import sys, distilcache.student, distilcache.train; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('distilcache.')} & {'precompute', 'evaluate', 'teacher'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
