"""`cello1 build` on h5ad files: backed reading, donor splits, unseen diseases, and every kind of bad input.

The multi-donor files re-label the real embedded cells with pseudo-donors (and one pseudo-disease) so the split
logic can be tested offline; they test the mechanism, and are never presented as data."""
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from conftest import cello1, read_jsonl


def write(adata, path):
    "Write an AnnData to h5ad and return the path."
    adata.write_h5ad(path)
    return path


def pseudo_donors(pbmc, k=5):
    "The embedded cells split over `k` pseudo-donors (cells are real; donor labels are a test fixture)."
    a = pbmc.copy()
    a.obs["donor_id"] = pd.Categorical([f"donor{i % k}" for i in range(a.n_obs)])
    return a


def test_h5ad_backed_matches_in_memory(pbmc, embedded_build, tmp_path):
    f = write(pbmc, tmp_path / "pbmc68k_reduced.h5ad")
    cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10", "--test-frac", "0.2")
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "o" / name).read_bytes() == (embedded_build / name).read_bytes()


def test_raw_counts_preferred_over_normalised_x(pbmc, embedded_build, tmp_path):
    a = pbmc.copy()
    a.raw = pbmc.copy()
    a.X = np.log1p(a.X.toarray() * 3.0)  # a normalised X; the ranking must come from raw.X
    f = write(a, tmp_path / "pbmc68k_reduced.h5ad")
    cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10", "--test-frac", "0.2")
    assert (tmp_path / "o" / "train.jsonl").read_bytes() == (embedded_build / "train.jsonl").read_bytes()


def test_donor_split_is_donor_disjoint(pbmc, tmp_path):
    f = write(pseudo_donors(pbmc), tmp_path / "pbmc5.h5ad")
    cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10", "--test-frac", "0.2")
    train, test = (read_jsonl(tmp_path / "o" / f"{s}.jsonl") for s in ("train", "test"))
    assert train and test
    assert not {r["donor_id"] for r in train} & {r["donor_id"] for r in test}
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["leakage"]["test"]["cells"] == 0 and not m["notes"]
    assert set(m["counts"]["test"]["by_n"]) == {"8", "9", "10"}


def test_puzzle_split_reports_real_leakage(pbmc, tmp_path):
    f = write(pseudo_donors(pbmc, 2), tmp_path / "pbmc2.h5ad")
    cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10", "--split-by", "puzzle")
    train, test = (read_jsonl(tmp_path / "o" / f"{s}.jsonl") for s in ("train", "test"))
    shared_cells = {c for r in train for c in r["cell_ids"]}
    leaked = sum(c in shared_cells for r in test for c in r["cell_ids"])
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert leaked > 0  # the public behaviour: the same cell on both sides
    assert m["leakage"]["test"]["cells"] >= leaked  # gene-list identity catches at least the identical cells
    assert m["counts"]["train"]["total"] + m["counts"]["test"]["total"] == 120


def test_unseen_disease_moves_whole_donors(pbmc, tmp_path):
    a = pseudo_donors(pbmc, 4)
    a.obs["disease"] = pd.Categorical(np.where(a.obs["donor_id"] == "donor3", "systemic lupus erythematosus", "normal"))
    f = write(a, tmp_path / "pbmc4.h5ad")
    cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10", "--unseen-disease", "systemic lupus erythematosus")
    unseen = read_jsonl(tmp_path / "o" / "unseen.jsonl")
    others = read_jsonl(tmp_path / "o" / "train.jsonl") + read_jsonl(tmp_path / "o" / "test.jsonl")
    assert unseen and {r["donor_id"] for r in unseen} == {"donor3"}
    assert all("systemic lupus erythematosus" in r["user_msg"] for r in unseen)
    assert "donor3" not in {r["donor_id"] for r in others}
    assert "unseen" in json.loads((tmp_path / "o" / "manifest.json").read_text())["leakage"]


def test_missing_feature_name_falls_back_with_warning(pbmc, tmp_path):
    a = pbmc.copy()
    del a.var["feature_name"]
    f = write(a, tmp_path / "nofeat.h5ad")
    p = cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10")
    assert "nofeat.h5ad: var has no 'feature_name' column" in p.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert any("feature_name" in n for n in m["notes"])


def test_small_donors_skipped_and_counted(pbmc, tmp_path):
    a = pseudo_donors(pbmc, 3)
    small = (a.obs["donor_id"] == "donor0") & a.obs["cell_type"].isin(a.obs["cell_type"].cat.categories[:4])
    a = a[~small.to_numpy()].copy()  # donor0 keeps only 6 types < min-n 8
    f = write(a, tmp_path / "small.h5ad")
    p = cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10")
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["inputs"][0]["n_groups_skipped"] == 1
    assert "fewer than 8 cell types" in p.stderr
    assert "donor0" not in {r["donor_id"] for r in read_jsonl(tmp_path / "o" / "train.jsonl")}


def test_nan_metadata(pbmc, tmp_path):
    a = pbmc.copy()
    ct = a.obs["cell_type"].astype(object)
    ct.iloc[:50] = np.nan
    a.obs["cell_type"] = ct.astype("category")
    a.obs["tissue"] = pd.Categorical([np.nan] * a.n_obs, categories=["blood"])
    f = write(a, tmp_path / "nan.h5ad")
    p = cello1("build", "--h5ad", f, "--out", tmp_path / "o", "--max-n", "10")
    assert "nan.h5ad: 50 of 700 cells have a missing cell_type or donor_id" in p.stderr
    used = {c for r in read_jsonl(tmp_path / "o" / "train.jsonl") for c in r["cell_ids"]}
    assert not used & set(a.obs_names[:50])
    assert all("originating from" not in r["user_msg"] and "nan" not in r["user_msg"].split("\n")[0]
               for r in read_jsonl(tmp_path / "o" / "train.jsonl"))


@pytest.mark.parametrize("drop", ["cell_type", "donor_id"])
def test_missing_required_column(pbmc, tmp_path, drop):
    a = pbmc.copy()
    del a.obs[drop]
    f = write(a, tmp_path / f"no_{drop}.h5ad")
    p = cello1("build", "--h5ad", f, "--out", tmp_path / "o", check=False)
    assert p.returncode == 2
    assert f"no_{drop}.h5ad: obs has no '{drop}' column" in p.stderr


def test_bad_files(tmp_path):
    (tmp_path / "empty.h5ad").write_bytes(b"")
    (tmp_path / "text.h5ad").write_text("cell_type,donor_id\nB cell,d1\n")
    cases = {"empty.h5ad": "empty file", "text.h5ad": "not an h5ad file", "absent.h5ad": "no such file"}
    for name, problem in cases.items():
        p = cello1("build", "--h5ad", tmp_path / name, "--out", tmp_path / "o", check=False)
        assert p.returncode == 2, name
        assert f"{name}: {problem}" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_scaled_data_rejected(pbmc, tmp_path):
    a = pbmc.copy()
    a.X = a.X.toarray() - 1.0  # scaled-like: negative values
    f = write(a, tmp_path / "scaled.h5ad")
    p = cello1("build", "--h5ad", f, "--out", tmp_path / "o", check=False)
    assert p.returncode == 2 and "scaled.h5ad: X: expression values must be non-negative" in p.stderr


def test_bad_options_exit_nonzero(tmp_path):
    p = cello1("build", "--embedded", "--out", tmp_path, "--min-n", "12", "--max-n", "10", check=False)
    assert p.returncode == 2 and "min_n" in p.stderr
