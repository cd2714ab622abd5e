"""`build_census` on a local Census copy (tiledbsoma, no network) written from the embedded real PBMC data.

The embedded data have ONE real donor. To give the Census build several datasets and donors to work with, its
cells are split into two pseudo-datasets and, within them, into pseudo-donors: these are synthetic splits of one
real donor, not real donors. The expression values are the real UMI counts.
"""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from cello1.census import write_local_census
from cello1.core import InputError
from cello1.census import build_census
from cello1.puzzles import BuildConfig, build_from_files
from cello1.records import check_record

CFG = BuildConfig.embedded(min_n=6, max_n=8, per_n=6, test_frac=0.34)


@pytest.fixture(scope="module")
def local(pbmc):
    "The embedded AnnData with census obs columns: 2 pseudo-datasets, 5 pseudo-donors (synthetic splits of one donor)."
    a = pbmc.copy()
    ds = np.where(np.arange(a.n_obs) % 10 < 6, "pbmc-a", "pbmc-b")
    donor = [f"{d}-donor{i % (3 if d == 'pbmc-a' else 2)}" for i, d in enumerate(ds)]
    a.obs["dataset_id"] = pd.Categorical(ds)
    a.obs["donor_id"] = pd.Categorical(donor)
    a.obs["sex"] = pd.Categorical(["female" if d.endswith(("donor0", "donor2")) else "male" for d in donor])
    a.obs["development_stage"] = pd.Categorical(["45-year-old human stage" if d.endswith("donor1") else "adult" for d in donor])
    return a


@pytest.fixture(scope="module")
def census(local, tmp_path_factory):
    "A local Census copy of `local` (root directory)."
    return write_local_census(local, tmp_path_factory.mktemp("census") / "root")


def h5ad_files(adata, folder):
    "One h5ad per dataset, named by its dataset_id (the census build names datasets by id), cells in census order."
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in sorted(adata.obs["dataset_id"].unique()):
        adata[adata.obs["dataset_id"] == d].copy().write_h5ad(folder / f"{d}.h5ad")
        paths.append(folder / f"{d}.h5ad")
    return paths


def splits(out):
    "{split file: bytes} of a build directory."
    return {f: (out / f).read_bytes() for f in ("train.jsonl", "test.jsonl")}


def records(out):
    "All records of a build directory."
    return [json.loads(l) for f in ("train.jsonl", "test.jsonl") for l in (out / f).read_text().splitlines()]


@pytest.fixture(scope="module")
def h5ad_build(local, tmp_path_factory):
    "The h5ad builder's output on the same cells, one file per dataset."
    tmp = tmp_path_factory.mktemp("h5ad")
    build_from_files(h5ad_files(local, tmp / "files"), CFG, tmp / "out", progress=False)
    return tmp / "out"


def test_same_puzzles_as_the_h5ad_builder(census, h5ad_build, tmp_path):
    m = build_census(CFG, tmp_path, uri=census, chunk_cells=64, progress=False)
    assert splits(tmp_path) == splits(h5ad_build)  # same batches, cells, gene lists, contexts, candidates, ids
    recs = records(tmp_path)
    for r in recs: check_record(r, r["id"])
    assert {r["dataset"] for r in recs} == {"pbmc-a", "pbmc-b"}
    assert len({r["donor_id"] for r in recs}) == 5
    assert m["census"] == dict(census_version=None, uri=str(census), organism="homo_sapiens", obs_filter=None,
                               datasets=["pbmc-a", "pbmc-b"], chunk_cells=64, executor=None)
    assert m["config"]["cell_repr"] == "cell"


def test_obs_filter_is_honoured(census, local, tmp_path):
    flt = "sex == 'female' and development_stage != '45-year-old human stage'"
    m = build_census(CFG, tmp_path / "census", uri=census, obs_filter=flt, progress=False)
    keep = (local.obs["sex"] == "female") & (local.obs["development_stage"] != "45-year-old human stage")
    assert [i["n_cells"] for i in m["inputs"]] == [int((keep & (local.obs["dataset_id"] == d)).sum()) for d in ("pbmc-a", "pbmc-b")]
    recs = records(tmp_path / "census")
    assert {r["sex"] for r in recs} == {"female"} and {r["development_stage"] for r in recs} == {"adult"}
    kept_ids = set(local.obs_names[keep.to_numpy()])
    assert all(c in kept_ids for r in recs for c in r["cell_ids"])
    assert m["census"]["obs_filter"] == flt
    # the same cells written as h5ad give the same puzzles
    build_from_files(h5ad_files(local[keep.to_numpy()], tmp_path / "files"), CFG, tmp_path / "h5ad", progress=False)
    assert splits(tmp_path / "census") == splits(tmp_path / "h5ad")


def test_datasets_select_and_order(census, tmp_path):
    m = build_census(CFG, tmp_path, uri=census, datasets=["pbmc-b"], progress=False)
    assert m["census"]["datasets"] == ["pbmc-b"] and [i["dataset"] for i in m["inputs"]] == ["pbmc-b"]
    assert {r["dataset"] for r in records(tmp_path)} == {"pbmc-b"}


def test_chunks_bound_the_reads_and_not_the_result(census, tmp_path):
    small = build_census(CFG, tmp_path / "small", uri=census, chunk_cells=5, progress=False)
    big = build_census(CFG, tmp_path / "big", uri=census, chunk_cells=100_000, progress=False)
    assert splits(tmp_path / "small") == splits(tmp_path / "big")
    recs = records(tmp_path / "small")
    for part, whole in zip(small["inputs"], big["inputs"]):
        used = {c for r in recs if r["dataset"] == part["dataset"] for c in r["cell_ids"]}
        assert part["reads"]["cells"] == whole["reads"]["cells"] == len(used)  # only the puzzles' cells are read
        assert part["reads"]["max_cells_per_read"] <= 5
        assert part["reads"]["reads"] == math.ceil(len(used) / 5)
        assert whole["reads"]["reads"] == 1


@pytest.mark.parametrize("cell_repr", ["centroid", "de"])
def test_cell_repr_from_the_census(census, local, cell_repr, tmp_path):
    cfg = BuildConfig.embedded(min_n=6, max_n=8, per_n=4, test_frac=0.34, cell_repr=cell_repr)
    m = build_census(cfg, tmp_path / "census", uri=census, datasets=["pbmc-b"], chunk_cells=16, progress=False)
    assert m["config"]["cell_repr"] == cell_repr
    assert m["inputs"][0]["reads"]["max_cells_per_read"] <= 16 < m["inputs"][0]["reads"]["cells"]
    b = local[(local.obs["dataset_id"] == "pbmc-b").to_numpy()]
    build_from_files(h5ad_files(b, tmp_path / "files"), cfg, tmp_path / "h5ad", progress=False)
    assert splits(tmp_path / "census") == splits(tmp_path / "h5ad")


def test_job_array_on_submitits_local_executor(census, h5ad_build, tmp_path):
    from cello1.slurm import SlurmConfig, make_executor
    ex = make_executor(SlurmConfig(executor="local", folder=str(tmp_path / "logs"), time_min=10))
    m = build_census(CFG, tmp_path / "out", uri=census, chunk_cells=64, executor=ex, progress=False)
    assert m["census"]["executor"] == "LocalExecutor"
    assert len(list((tmp_path / "logs").glob("*_result.pkl"))) == 2  # one job per dataset ran
    assert splits(tmp_path / "out") == splits(h5ad_build)


def test_bad_input_is_named(census, tmp_path):
    with pytest.raises(InputError, match=r"--datasets: unknown dataset id\(s\) .*: pbmc-z"):
        build_census(CFG, tmp_path, uri=census, datasets=["pbmc-a", "pbmc-z"])
    with pytest.raises(InputError, match="--obs-filter: no cells of .* match \"cell_type == 'neuron'\""):
        build_census(CFG, tmp_path, uri=census, obs_filter="cell_type == 'neuron'")
    with pytest.raises(InputError, match="--obs-filter: obs filter .* failed"):
        build_census(CFG, tmp_path, uri=census, obs_filter="no_such_column == 'x'")
    with pytest.raises(InputError, match="no such directory"):
        build_census(CFG, tmp_path, uri=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="could not open as a Census"):
        build_census(CFG, tmp_path, uri=tmp_path / "empty")
    with pytest.raises(InputError, match="has no census_data/mus_musculus experiment"):
        build_census(CFG, tmp_path, uri=census, organism="mus_musculus")
    with pytest.raises(InputError, match="--chunk-cells: must be >= 1"):
        build_census(CFG, tmp_path, uri=census, chunk_cells=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = build_census(CFG, tmp_path / "one", uri=census, obs_filter="dataset_id == 'pbmc-a'", datasets=["pbmc-a", "pbmc-b"], progress=False)
    assert m["census"]["datasets"] == ["pbmc-a"] and any("dataset pbmc-b has no cells matching" in str(x.message) for x in w)


def test_cli_build_census(census, h5ad_build, tmp_path):
    "`cello1 build --census --census-uri` is the library build: same files; bad input exits non-zero naming the problem."
    from conftest import cello1
    out = tmp_path / "cli"
    cello1("build", "--census", "--census-uri", census, "--min-n", 6, "--max-n", 8, "--per-n", 6, "--test-frac", 0.34,
           "--split-by", "donor", "--chunk-cells", 50, "--out", out)
    assert splits(out) == splits(h5ad_build)
    bad = cello1("build", "--census", "--census-uri", census, "--datasets", "no-such-dataset", "--out", tmp_path / "bad", check=False)
    assert bad.returncode != 0 and "no-such-dataset" in bad.stderr
