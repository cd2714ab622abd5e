"""Packaging, the benchmark command and the reproduce pipeline, as a user runs them."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, cello1


def test_wheel_carries_the_paper_and_reproduces_outside_the_repo(tmp_path):
    "A wheel installed into a fresh prefix: entry point, LICENSE, the paper notebooks, and `reproduce` run elsewhere."
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("cello1-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert {"cello1/puzzles.py", "cello1/data.py", "cello1/cli.py", "cello1/__main__.py"} <= set(names)
        ep = next(n for n in names if n.endswith("entry_points.txt"))
        assert "cello1 = cello1.cli:main" in z.read(ep).decode()
        assert any(n.endswith("/licenses/LICENSE") for n in names)
        paper = {Path(n).name for n in names if "/share/cello1/paper/" in n}
        assert paper == {p.name for p in (ROOT / "paper").glob("*.ipynb")} | {"reported.csv"}
    # Installed as an installer lays a wheel out in a prefix (purelib and data; `pip install --prefix` would
    # uninstall the test environment's own cello1 first): <prefix>/lib/pythonX.Y/site-packages and <prefix>/share.
    prefix, site = tmp_path / "prefix", tmp_path / "prefix" / "lib" / "python3" / "site-packages"
    with zipfile.ZipFile(wheel) as z:
        for n in names:
            data = n.split(".data/data/", 1)
            dest = prefix / data[1] if len(data) == 2 else site / n
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(n))
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "cello1", *map(str, a)], cwd=tmp_path, env=env,
                                    capture_output=True, text=True)
    where = subprocess.run([sys.executable, "-c", "import cello1; print(cello1.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    assert run("--version").stdout.startswith("cello1 ")
    r = run("reproduce", "--profile", "embedded", "--no-cpu", "--only", "table2_main_results", "--results", "res",
            "--figures", "figs")
    assert r.returncode == 0, r.stderr[-2000:]
    t2 = (tmp_path / "res" / "table2_main_results.csv").read_text()
    assert "reported (paper, Table 2)" in t2 and "0.6849" in t2  # the paper's rows, read from the installed copy


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
    # no timing is asserted (shared, noisy machines): the ratios must be those of the measured rates, and each
    # target's verdict the one its ratio gives
    assert r["speedup_vs_loop"] == pytest.approx(r["top_genes_cells_per_s"] / r["loop_cells_per_s"])
    assert r["ratio_to_floor"] == pytest.approx(r["floor_cells_per_s"] / r["top_genes_cells_per_s"])
    assert f"target >= 50x: {'met' if r['speedup_vs_loop'] >= 50 else 'missed'})" in p.stdout
    assert f"target <= 5x: {'met' if r['ratio_to_floor'] <= 5 else 'missed'})" in p.stdout


def test_the_lock_pins_every_requirement_within_its_bounds():
    "requirements-lock.txt (what make installs) holds each package settings.ini asks for, at a version it allows."
    from configparser import ConfigParser
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    lock = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            lock[canonicalize_name(name)] = version
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    extras = ("dev", "train", "api", "serve", "cluster", "census")  # the Makefile's EXTRAS
    wanted = cfg["DEFAULT"]["requirements"].split() + [r for e in extras for r in cfg["DEFAULT"][f"{e}_requirements"].split()]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in lock, f"{spec} is not in requirements-lock.txt"
        assert spec.specifier.contains(lock[name], prereleases=True), f"lock has {name}=={lock[name]}, settings.ini {spec}"
    assert "-r requirements-lock.txt" in (ROOT / "environment.yml").read_text()
