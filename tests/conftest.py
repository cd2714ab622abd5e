"""Shared fixtures: the installed `cello1` command, an embedded build, the shared CellPuzzles sample."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "cellpuzzles-sample"


def cello1(*args, check=True, cwd=None):
    "Run the installed `cello1` console script; return the CompletedProcess."
    exe = Path(sys.executable).parent / "cello1"
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"cello1 {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def read_jsonl(path):
    "Records of a JSONL file."
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def embedded_build(tmp_path_factory):
    "One `cello1 build --embedded` run, shared by the tests that only read it."
    out = tmp_path_factory.mktemp("embedded")
    cello1("build", "--embedded", "--out", out)
    return out


@pytest.fixture(scope="session")
def pbmc():
    "The embedded data as an in-memory AnnData (counts, CELLxGENE obs)."
    from cello1.data import load_embedded
    return load_embedded()


@pytest.fixture
def shared_sample():
    "The directory of real CellPuzzles records; skips when ../shared is absent (a user's clone)."
    if not SHARED.is_dir():
        pytest.skip("../shared/cellpuzzles-sample is not present")
    return SHARED
