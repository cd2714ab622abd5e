"""End-to-end tests of `cello1 build` on the embedded real data: invariants, determinism, splits."""
import json

import numpy as np
import pytest

from conftest import cello1, read_jsonl
from cello1.prompts import parse_user_msg
from cello1.records import check_record


def independent_top(counts_row, names, n=50):
    "Recompute a cell's top genes without cello1: stable sort by value (desc) then column, zeros dropped."
    order = np.lexsort((np.arange(len(counts_row)), -counts_row))
    return [names[j] for j in order[:n] if counts_row[j] > 0]


def test_outputs_and_manifest(embedded_build):
    files = sorted(p.name for p in embedded_build.iterdir())
    assert files == ["manifest.json", "test.jsonl", "train.jsonl"]
    m = json.loads((embedded_build / "manifest.json").read_text())
    for name, info in m["files"].items():
        import hashlib
        assert hashlib.sha256((embedded_build / name).read_bytes()).hexdigest() == info["sha256"]
        assert len(read_jsonl(embedded_build / name)) == info["records"]
    assert m["counts"]["train"]["total"] + m["counts"]["test"]["total"] == 120
    assert m["inputs"][0]["n_cells"] == 700


@pytest.mark.parametrize("split", ["train", "test"])
def test_invariants(embedded_build, pbmc, split):
    recs = read_jsonl(embedded_build / f"{split}.jsonl")
    obs = pbmc.obs
    dense = pbmc.X.toarray()
    names = pbmc.var["feature_name"].tolist()
    pos = {c: i for i, c in enumerate(pbmc.obs_names)}
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        p = check_record(r)
        labels = [a.strip() for a in r["answer"].split("|")]
        assert 8 <= len(labels) <= 10 and r["n_cells"] == len(labels)
        assert len(set(labels)) == len(labels), "labels must be distinct"
        assert sorted(p["candidates"]) == sorted(labels)
        assert {obs["donor_id"].iloc[pos[c]] for c in r["cell_ids"]} == {r["donor_id"]}
        assert [obs["cell_type"].iloc[pos[c]] for c in r["cell_ids"]] == labels
        for cid, genes in zip(r["cell_ids"], p["cells"]):
            assert genes == independent_top(dense[pos[cid]], names), f"{r['id']} {cid}"


def test_candidates_shuffled_not_sorted(embedded_build):
    recs = read_jsonl(embedded_build / "train.jsonl")
    cands = [parse_user_msg(r["user_msg"])["candidates"] for r in recs]
    assert sum(c != sorted(c) for c in cands) > len(cands) // 2
    answers = [r["answer"].split(" | ") for r in recs]
    assert sum(a != c for a, c in zip(answers, cands)) > len(cands) // 2


def test_sorted_candidates_option(tmp_path):
    cello1("build", "--embedded", "--out", tmp_path, "--candidate-order", "sorted", "--per-n", "5")
    for r in read_jsonl(tmp_path / "train.jsonl"):
        c = parse_user_msg(r["user_msg"])["candidates"]
        assert c == sorted(c)


def test_no_cell_shared_between_train_and_test(embedded_build):
    train = {c for r in read_jsonl(embedded_build / "train.jsonl") for c in r["cell_ids"]}
    test = {c for r in read_jsonl(embedded_build / "test.jsonl") for c in r["cell_ids"]}
    assert train and test and not train & test
    m = json.loads((embedded_build / "manifest.json").read_text())
    assert m["leakage"]["test"]["cells"] == 0
    assert any("one donor" in n for n in m["notes"])


def test_deterministic_byte_identical(embedded_build, tmp_path):
    cello1("build", "--embedded", "--out", tmp_path)
    for name in ("train.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / name).read_bytes() == (embedded_build / name).read_bytes(), name


def test_seed_changes_output(embedded_build, tmp_path):
    cello1("build", "--embedded", "--out", tmp_path, "--seed", "7")
    assert (tmp_path / "train.jsonl").read_bytes() != (embedded_build / "train.jsonl").read_bytes()


def test_parameters_respected(tmp_path):
    cello1("build", "--embedded", "--out", tmp_path, "--top-genes", "20", "--min-n", "9", "--max-n", "9",
           "--per-n", "10", "--test-size", "1")
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["counts"]["test"]["total"] == 1 and m["test_dropped_over_cap"] == 1
    for r in read_jsonl(tmp_path / "train.jsonl"):
        p = parse_user_msg(r["user_msg"])
        assert len(p["cells"]) == 9 and all(len(g) == 20 for g in p["cells"])
