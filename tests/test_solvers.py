"""`cello1 solve` and `cello1 eval` end to end, on the embedded puzzles and the real public sample."""
import json

import pytest

from conftest import cello1, read_jsonl
from cello1.metrics import is_valid


def solve_eval(tmp_path, puzzles, solver, *extra):
    "Solve then evaluate; return the metrics JSON."
    pred, out = tmp_path / f"{solver}.jsonl", tmp_path / f"{solver}.json"
    cello1("solve", "--puzzles", puzzles, "--solver", solver, "--out", pred, *extra)
    p = cello1("eval", "--predictions", pred, "--out", out, "--bootstrap", "200")
    assert "| Model | Response Length | Cell-level Acc | Batch-level Acc | Format | Uniqueness |" in p.stdout
    return json.loads(out.read_text()), read_jsonl(pred)


def test_solvers_on_embedded(embedded_build, tmp_path):
    test = embedded_build / "test.jsonl"
    rnd, preds = solve_eval(tmp_path, test, "random")
    assert all(is_valid(p["prediction"]) for p in preds) and rnd["uniqueness"] == 1.0
    mk, _ = solve_eval(tmp_path, test, "marker")
    ref, _ = solve_eval(tmp_path, test, "reference", "--train", embedded_build / "train.jsonl")
    assert mk["format_validity"] == ref["format_validity"] == 1.0 and mk["uniqueness"] == ref["uniqueness"] == 1.0
    assert mk["cell_acc"] > rnd["cell_acc"] + 0.3 and ref["cell_acc"] > rnd["cell_acc"] + 0.3
    ind, _ = solve_eval(tmp_path, test, "marker", "--independent")
    assert ind["uniqueness"] < 1.0  # without the constraint labels repeat


def test_random_is_seeded(embedded_build, tmp_path):
    for i in (1, 2):
        cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "random", "--seed", "3", "--out", tmp_path / f"{i}.jsonl")
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()


def test_eval_joins_answers_by_id(embedded_build, tmp_path):
    cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "marker", "--out", tmp_path / "p.jsonl")
    stripped = [{k: v for k, v in r.items() if k != "answer"} for r in read_jsonl(tmp_path / "p.jsonl")]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    bad = cello1("eval", "--predictions", tmp_path / "q.jsonl", check=False)
    assert bad.returncode == 2 and "has no answer" in bad.stderr
    cello1("eval", "--predictions", tmp_path / "p.jsonl", "--out", tmp_path / "a.json")
    cello1("eval", "--predictions", tmp_path / "q.jsonl", "--puzzles", embedded_build / "test.jsonl", "--out", tmp_path / "b.json")
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["cell_acc"] == b["cell_acc"] and a["batch_acc"] == b["batch_acc"]


def test_reference_needs_training_data(embedded_build, tmp_path):
    p = cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "reference", "--out", tmp_path / "p.jsonl", check=False)
    assert p.returncode == 2 and "needs --train" in p.stderr


def test_marker_solver_on_real_public_sample(shared_sample, tmp_path):
    sample = shared_sample / "test_sample.jsonl"
    mk, _ = solve_eval(tmp_path, sample, "marker")
    rnd, _ = solve_eval(tmp_path, sample, "random")
    cv, _ = solve_eval(tmp_path, sample, "reference", "--cross-validate", "context")
    assert mk["n_batches"] == 45 and mk["cell_acc"] > 0.6 and rnd["cell_acc"] < 0.2
    assert cv["cell_acc"] > rnd["cell_acc"] + 0.3
