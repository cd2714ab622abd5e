"""`BuildConfig(cell_repr=...)`: a puzzle cell as one cell (paper), its type's centroid in the donor group, or DE genes."""
import json

import numpy as np
import pytest

from cello1.core import InputError
from cello1.prompts import parse_user_msg
from cello1.puzzles import BuildConfig, build, build_embedded
from cello1.records import check_record


def records(out, split="test"):
    "The records of one split of a build directory."
    return [json.loads(l) for l in (out / f"{split}.jsonl").read_text().splitlines()]


def lines_by_label(recs):
    "{label: gene list} over records (with split_by='puzzle' every label has one centroid/DE line)."
    out = {}
    for r in recs:
        for label, genes in zip(r["answer"].split(" | "), parse_user_msg(r["user_msg"])["cells"]):
            assert out.setdefault(label, genes) == genes  # one line per type in the one group
    return out


@pytest.fixture(scope="module")
def reprs(tmp_path_factory):
    "The embedded build with each cell representation: {cell_repr: (manifest, out dir)}."
    tmp = tmp_path_factory.mktemp("reprs")
    return {c: (build_embedded(BuildConfig.embedded(cell_repr=c), tmp / c, progress=False), tmp / c) for c in ("cell", "centroid", "de")}


def test_same_batches_different_lines(reprs):
    base = records(reprs["cell"][1]) + records(reprs["cell"][1], "train")
    for c, (m, out) in reprs.items():
        assert m["config"]["cell_repr"] == c
        recs = records(out) + records(out, "train")
        for r in recs: check_record(r, r["id"])
        assert [(r["answer"], r["cell_ids"], r["donor_id"]) for r in recs] == [(r["answer"], r["cell_ids"], r["donor_id"]) for r in base]
        assert [parse_user_msg(r["user_msg"])["candidates"] for r in recs] == [parse_user_msg(r["user_msg"])["candidates"] for r in base]
        assert m["leakage"]["test"]["cells"] == 0  # train and test centroids/DE come from different cells
    cent = lines_by_label(records(reprs["centroid"][1]))  # the test side is one group: one centroid per type
    single = [g for r in records(reprs["cell"][1]) for g in parse_user_msg(r["user_msg"])["cells"]]
    assert len({tuple(g) for g in single}) > len(cent)  # a cell per puzzle line vs one centroid per type
    assert all(len(g) == 50 for g in cent.values())


def test_centroid_is_the_mean_of_normalised_cells(pbmc, tmp_path):
    build_embedded(BuildConfig.embedded(cell_repr="centroid", split_by="puzzle"), tmp_path, progress=False)
    lines = lines_by_label(records(tmp_path) + records(tmp_path, "train"))
    X = pbmc.X.toarray().astype(np.float64)
    X = X / X.sum(1, keepdims=True) * 1e4
    names = pbmc.var["feature_name"].to_numpy()
    for label, genes in lines.items():
        mean = X[(pbmc.obs["cell_type"] == label).to_numpy()].mean(0).astype(np.float32)
        order = np.lexsort((np.arange(len(mean)), -mean))  # highest first, ties by gene position
        assert genes == list(names[order[:50]]), label


def test_de_genes_are_up_in_their_type(pbmc, tmp_path):
    build_embedded(BuildConfig.embedded(cell_repr="de", split_by="puzzle"), tmp_path, progress=False)
    lines = lines_by_label(records(tmp_path) + records(tmp_path, "train"))
    assert len(lines) == 10
    X = pbmc.X.toarray().astype(np.float64)
    logn = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    col = {g: i for i, g in enumerate(pbmc.var["feature_name"])}
    for label, genes in lines.items():
        inside = (pbmc.obs["cell_type"] == label).to_numpy()
        top = [col[g] for g in genes[:10]]
        assert (logn[inside][:, top].mean(0) > logn[~inside][:, top].mean(0)).all(), label
    assert {"CD79A", "MS4A1"} <= set(lines["B cell"][:10]) and {"NKG7", "GNLY"} <= set(lines["natural killer cell"][:10])
    assert "LYZ" in lines["dendritic cell"][:10] and "CD3D" in lines["regulatory T cell"][:10]


def test_de_leaves_out_single_cell_types(pbmc, tmp_path):
    lone = np.flatnonzero(pbmc.obs["cell_type"] == "hematopoietic precursor cell")
    keep = np.setdiff1d(np.arange(pbmc.n_obs), lone[1:])  # one hematopoietic precursor cell left
    data = [("pbmc_one_precursor", pbmc[keep].copy(), "pbmc_one_precursor")]
    kw = dict(min_n=8, max_n=9, per_n=30, split_by="puzzle")
    build(data, BuildConfig.embedded(**kw), tmp_path / "cell", progress=False)
    m = build(data, BuildConfig.embedded(cell_repr="de", **kw), tmp_path / "de", progress=False)
    labels = lambda out: {l for r in records(out) + records(out, "train") for l in r["answer"].split(" | ")}
    assert "hematopoietic precursor cell" in labels(tmp_path / "cell")
    assert "hematopoietic precursor cell" not in labels(tmp_path / "de") and len(labels(tmp_path / "de")) == 9
    assert any("1 single-cell types left out" in n for n in m["notes"])


@pytest.mark.parametrize("cell_repr", ["centroid", "de"])
def test_scaled_data_is_refused(pbmc, cell_repr, tmp_path):
    scaled = pbmc.copy()
    scaled.X = scaled.X.toarray() - 1.0  # negative values: scaled, not counts
    with pytest.raises(InputError, match="scaled.h5ad: X: expression values must be non-negative"):
        build([("scaled", scaled, "scaled.h5ad")], BuildConfig.embedded(cell_repr=cell_repr), tmp_path, progress=False)


def test_unknown_repr_is_refused():
    with pytest.raises(ValueError, match="cell_repr must be one of cell, centroid, de"):
        BuildConfig(cell_repr="pseudobulk")
