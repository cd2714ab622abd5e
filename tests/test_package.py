"""Packaging, the benchmark command and the reproduce pipeline, as a user runs them."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, cello1


def test_wheel_builds_with_entry_point(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("cello1-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert {"cello1/puzzles.py", "cello1/data.py", "cello1/cli.py"} <= set(names)
        ep = next(n for n in names if n.endswith("entry_points.txt"))
        assert "cello1 = cello1.cli:main" in z.read(ep).decode()


def test_module_is_what_the_notebooks_export(tmp_path):
    "cello1/ must be exactly what nbdev_export writes from nbs/."
    before = {p.name: p.read_text() for p in (ROOT / "cello1").glob("*.py")}
    subprocess.run([str(Path(sys.executable).parent / "nbdev_export")], cwd=ROOT, check=True, capture_output=True)
    after = {p.name: p.read_text() for p in (ROOT / "cello1").glob("*.py")}
    assert after == before


def test_bench_topgenes_small(tmp_path):
    p = cello1("bench", "topgenes", "--cells", "4000", "--genes", "3000", "--nnz", "300", "--loop-cells", "300",
               "--json", tmp_path / "b.json")
    assert "speed-up vs loop:" in p.stdout and "ratio to floor:" in p.stdout
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["agree"] is True and r["cells"] == 4000
    assert r["speedup_vs_loop"] > 0 and r["ratio_to_floor"] > 0  # ratios were measured; no timing is asserted (shared, noisy machines)
