"""`cello1 consensus` and `predict --consensus`: planted votes whose per-cell majority repeats a label, so only the
one-to-one consensus recovers the answer; unusable samples count for nothing; the output scores like any prediction."""
import json

from conftest import cello1, read_jsonl


def planted(puzzles):
    "Five samples per puzzle: the answer once, twice with cell 1 given cell 0's label, one unparseable, one short."
    rows = []
    for p in puzzles:
        gold = [g.strip() for g in p["answer"].split("|")]
        dup = [gold[0], gold[0]] + gold[2:]
        answers = [gold, dup, dup]
        texts = [f"<think>x</think>\n<answer>{' | '.join(a)}</answer>" for a in answers]
        texts += ["I cannot tell.", f"<think>x</think>\n<answer>{' | '.join(gold[:-1])}</answer>"]
        rows += [dict(id=p["id"], sample=k, prediction=t, answer=p["answer"], model="planted") for k, t in enumerate(texts)]
    return rows


def test_consensus_recovers_what_a_per_cell_majority_cannot(embedded_build, tmp_path):
    test = embedded_build / "test.jsonl"
    puzzles = read_jsonl(test)
    votes = tmp_path / "votes.jsonl"
    votes.write_text("".join(json.dumps(r) + "\n" for r in planted(puzzles)))
    s = json.loads(cello1("consensus", "--predictions", votes, "--puzzles", test, "--out", tmp_path / "c.jsonl").stdout)
    assert s["puzzles"] == len(puzzles) and s["usable"] == 3 * len(puzzles) and s["of"] == 5 * len(puzzles)
    c = read_jsonl(tmp_path / "c.jsonl")
    assert all(r["consensus_of"] == dict(samples=5, usable=3) for r in c)
    assert all(r["cell_confidence"][:2] == [1.0, 1 / 3] for r in c)  # cell 1 got its label from the constraint
    cello1("eval", "--predictions", tmp_path / "c.jsonl", "--puzzles", test, "--bootstrap", "0", "--out", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["batch_acc"] == 1.0 and m["uniqueness"] == 1.0
    # confidences: per puzzle, cell 0 and cells 2.. at 1.0 (all right), cell 1 at 1/3 (right): ECE = 1/3 x (2/3) / N
    cells = sum(len(p["answer"].split("|")) for p in puzzles)
    assert m["calibration"]["n_cells"] == cells
    assert abs(m["calibration"]["ece"] - len(puzzles) * (2 / 3) / cells) < 1e-9
    # the per-cell majority of the same votes gives cell 1 cell 0's label in every puzzle: no batch is right
    majority = [dict(id=r["id"], prediction=r["prediction"], answer=r["answer"]) for r in planted(puzzles) if r["sample"] == 1]
    (tmp_path / "majority.jsonl").write_text("".join(json.dumps(r) + "\n" for r in majority))
    cello1("eval", "--predictions", tmp_path / "majority.jsonl", "--bootstrap", "0", "--out", tmp_path / "mm.json")
    assert json.loads((tmp_path / "mm.json").read_text())["batch_acc"] == 0.0


def test_consensus_refuses_what_would_be_wrong(embedded_build, tmp_path):
    test = embedded_build / "test.jsonl"
    rows = planted(read_jsonl(test))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({**r, "model": "a" if i % 2 else "b"}) + "\n" for i, r in enumerate(rows)))
    r = cello1("consensus", "--predictions", mixed, "--puzzles", test, "--out", tmp_path / "c.jsonl", check=False)
    assert r.returncode == 2 and "different runs" in r.stderr and not (tmp_path / "c.jsonl").exists()
    r = cello1("consensus", "--predictions", mixed, "--puzzles", test, "--out", mixed, check=False)
    assert r.returncode == 2 and "--out is also an input" in r.stderr
    r = cello1("consensus", "--predictions", mixed, "--puzzles", test, "--out", tmp_path / "c.jsonl", "--prior-weight", "-1",
               check=False)
    assert r.returncode == 2 and "--prior-weight: must be >= 0" in r.stderr


def test_predict_with_consensus_on_a_local_model(tiny, tmp_path):
    "K samples from the tiny model, then their consensus beside them, scored by eval."
    out = tmp_path / "p.jsonl"
    s = json.loads(cello1("predict", "--backend", "transformers", "--model", tiny["model"], "--puzzles", tiny["test"],
                          "--samples", "3", "--max-tokens", "24", "--temperature", "1", "--seed", "0", "--out", out,
                          "--consensus").stdout)
    n = len(read_jsonl(tiny["test"]))
    c = read_jsonl(tmp_path / "p.consensus.jsonl")
    assert s["consensus"]["puzzles"] == n == len(c) and s["consensus"]["of"] == 3 * n
    assert all(r["consensus_of"]["samples"] == 3 for r in c)
    cello1("eval", "--predictions", tmp_path / "p.consensus.jsonl", "--puzzles", tiny["test"], "--bootstrap", "0",
           "--out", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["uniqueness"] == 1.0  # one-to-one by construction


def test_calibrate_then_eval_reports_raw_and_calibrated(embedded_build, tmp_path):
    "Isotonic calibration of the consensus vote shares: every cell is right, so every confidence maps to 1.0."
    test = embedded_build / "test.jsonl"
    votes = tmp_path / "votes.jsonl"
    votes.write_text("".join(json.dumps(r) + "\n" for r in planted(read_jsonl(test))))
    cello1("consensus", "--predictions", votes, "--puzzles", test, "--out", tmp_path / "c.jsonl")
    s = json.loads(cello1("calibrate", "--predictions", tmp_path / "c.jsonl", "--puzzles", test, "--out",
                          tmp_path / "cal.json").stdout)
    assert s["breakpoints"] == 2  # the confidences 1/3 and 1.0
    r = cello1("eval", "--predictions", tmp_path / "c.jsonl", "--puzzles", test, "--bootstrap", "0",
               "--calibrator", tmp_path / "cal.json", "--out", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["calibration_raw"]["ece"] > 0 and m["calibration"]["ece"] == 0.0
    assert "(raw): ECE" in r.stdout and "(calibrated): ECE 0.0000" in r.stdout
    (tmp_path / "bad.json").write_text("[1, 2]")
    r = cello1("eval", "--predictions", tmp_path / "c.jsonl", "--calibrator", tmp_path / "bad.json", check=False)
    assert r.returncode == 2 and "not a calibrator written by cello1 calibrate" in r.stderr
