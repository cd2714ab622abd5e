"The module layout: every module imports only modules below it, so there are no import cycles."
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cello1"
# low to high: a module may import (at load time or inside a function) only modules before it
LAYERS = ["core", "data", "genes", "prompts", "metrics", "records", "puzzles", "census", "solvers", "consensus", "inference",
          "tiny", "slurm", "sft", "grpo", "distill", "annotation", "bench", "reproduce", "cli"]


def cello1_imports(path: Path) -> set:
    "The cello1 modules a file imports anywhere in it (relative or absolute, top level or lazy)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1: out.add(mod.split(".")[0] if mod else None)
            elif mod.startswith("cello1."): out.add(mod.split(".")[1])
            elif mod == "cello1": out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cello1."))
    return {m for m in out if m and m in LAYERS}


def test_every_module_has_a_layer():
    mods = {p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")}
    assert mods == set(LAYERS), f"modules without a layer: {mods - set(LAYERS)}; layers without a module: {set(LAYERS) - mods}"


@pytest.mark.parametrize("mod", LAYERS)
def test_imports_only_lower_modules(mod):
    higher = sorted(m for m in cello1_imports(PKG / f"{mod}.py") if LAYERS.index(m) >= LAYERS.index(mod))
    assert not higher, f"cello1.{mod} imports {higher}, which are not below it in {LAYERS}"


def test_metrics_stands_alone():
    "verl loads metrics.py by file path as its reward function: nothing from cello1 at load time, core at most inside."
    tree = ast.parse((PKG / "metrics.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("cello1"))]
    assert not top, [ast.unparse(n) for n in top]
    assert cello1_imports(PKG / "metrics.py") <= {"core"}


def test_a_violation_is_caught(tmp_path):
    "The check sees lazy and absolute imports too."
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from cello1.cli import main\nfrom .grpo import x\n")
    assert cello1_imports(f) == {"cli", "grpo"}
