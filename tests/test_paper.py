"""Paper reproduction: the reported numbers match the paper, and `cello1 reproduce` executes every paper notebook
(smallest parameters) writing figures (PNG, PDF, CSV), tables with reported and reproduced rows kept apart, and results/README.md."""
import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from cello1.records import evaluate_file
from conftest import ROOT, cello1, read_jsonl

PAPER_MD = ROOT.parent / "shared" / "paper" / "cell-o1.md"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "paper").glob("*.ipynb"))
FIGURES = [n for n in NOTEBOOKS if n.startswith("fig")]
TABLES = {"table2_main_results": "table2", "table11_batch_vs_cell": "table11", "table12_open_vs_constrained": "table12"}


def reported_rows():
    "paper/reported.csv as dicts."
    with open(ROOT / "paper" / "reported.csv", encoding="utf-8") as f: return list(csv.DictReader(f))


def test_reported_numbers_are_the_papers():
    "Every reported value appears on its model's (or category's) row of the table it cites, in the paper's own text."
    if not PAPER_MD.is_file(): pytest.skip("../shared/paper is not present")
    md = PAPER_MD.read_text(encoding="utf-8")
    table_lines = [l for l in md.splitlines() if l.startswith("|")]
    rows = reported_rows()
    assert {r["artefact"] for r in rows} >= {"table2", "table3", "table11", "table12", "table5", "table6", "table7_8"}
    for r in rows:
        if r["artefact"] == "distillation":
            assert r["value"] in md.replace(",", "") or f"{float(r['value']):.2%}" in md
            continue
        key = (r["model"] or r["condition"]).replace("♣", "").strip()
        cells = lambda l: [re.sub(r"<[^>]+>|♣", "", c).strip() for c in l.strip("|").split("|")]
        hits = [l for l in table_lines if key in cells(l) and r["value"] in cells(l)]
        assert hits, f"{r['artefact']} {key} {r['metric']}={r['value']} is on no row of the paper's tables"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    "`cello1 reproduce --profile embedded --preset smoke`: the real pipeline at its smallest parameters."
    root = tmp_path_factory.mktemp("reproduce")
    proc = cello1("reproduce", "--profile", "embedded", "--preset", "smoke", "--results", root / "results", "--figures", root / "figures",
                  cwd=ROOT)
    return dict(root=root, results=root / "results", figures=root / "figures", stdout=proc.stdout, stderr=proc.stderr)


def test_a_line_per_stage_and_no_library_noise(smoke):
    "The run's log says what ran and how long it took, not what the training stack or the kernels print."
    err = smoke["stderr"]
    for line in ("[reproduce] build: ", "[reproduce] solvers: ", "[reproduce] tiny SFT: ", "[reproduce] tiny GRPO ",
                 "[reproduce] notebooks 1/8: ", "[reproduce] notebooks 8/8: "):
        assert line in err, (line, err)
    for noise in ("FutureWarning", "IPKernelApp", "KeyboardInterrupt caught", "Warning:", "it/s]"):
        assert noise not in err, (noise, err)
    assert (smoke["results"] / "logs" / "table2_main_results.log").exists()  # the kernels' stderr went here


def test_every_notebook_executes_and_every_figure_is_written(smoke):
    res, figs = smoke["results"], smoke["figures"]
    assert {p.stem for p in res.glob("*.ipynb")} == set(NOTEBOOKS)
    for nb in res.glob("*.ipynb"):  # papermill raised on any failing cell; no error outputs either
        assert '"output_type": "error"' not in nb.read_text()
    for fig in FIGURES:
        for ext in ("png", "pdf", "csv"):
            assert (figs / f"{fig}.{ext}").stat().st_size > 0, f"{fig}.{ext}"
    readme = (res / "README.md").read_text()
    for nb in NOTEBOOKS: assert f"paper/{nb}.ipynb" in readme


def test_tables_keep_reported_and_reproduced_apart(smoke):
    res, paper = smoke["results"], pd.DataFrame(reported_rows())
    for stem, artefact in TABLES.items():
        t = pd.read_csv(res / f"{stem}.csv")
        rep = t[t.source.str.startswith("reported (paper")]
        want = paper[(paper.artefact == artefact) & (paper.metric == "cell_acc")]
        assert sorted(rep.cell_acc.round(4)) == sorted(want.value.astype(float).round(4))
        assert t.source.str.startswith(("reported (paper", "reproduced (embedded)")).all()
        assert (t.source.str.startswith("reproduced")).sum() >= 1, stem


def test_reproduced_rows_are_the_prediction_files_scores(smoke):
    res = smoke["results"]
    t = pd.read_csv(res / "table2_main_results.csv")
    ours = t[t.source == "reproduced (embedded)"].set_index("model")
    files = sorted((res / "predictions" / "test").glob("*.jsonl"))
    assert {f.stem for f in files} == {"random", "marker", "tiny-sft"}
    assert len(ours) == len(files)
    for f in files:
        m = evaluate_file(f, n_boot=0)
        row = ours[ours.index.str.contains(f.stem.split("-")[0])].iloc[0]
        assert (row.cell_acc, row.batch_acc, row.format_validity) == pytest.approx((m["cell_acc"], m["batch_acc"], m["format_validity"]))
    marker = ours.loc["marker solver (cellconsensus)"]
    assert marker.cell_acc > ours.loc["random assignment"].cell_acc  # the solver beats chance on real data


def test_cpu_stage_files_and_dynamics(smoke):
    res = smoke["results"]
    for task in ("cell", "open"):
        assert (res / "predictions" / task / "tiny-sft.jsonl").stat().st_size > 0
    fig5 = pd.read_csv(res / "fig5_training_dynamics.csv")
    assert set(fig5.config) == {"sft", "A"}
    assert fig5[fig5.config == "A"].reward.notna().any() and fig5[fig5.config == "sft"].loss.notna().any()
    t3 = pd.read_csv(res / "table3_unseen_diseases.csv")  # the embedded data has no unseen split: reported rows only
    assert t3.source.str.startswith("reported").all()
    readme = (res / "README.md").read_text()
    assert re.search(r"table2_main_results\.csv \| [1-9]\d* reproduced, 10 reported", readme)


def test_rerun_keeps_results(smoke):
    "A second CPU stage recomputes nothing that exists: results are append-only."
    from cello1.reproduce import reproduce_config, run_solvers, run_tiny
    res = smoke["results"]
    stamps = {p: p.stat().st_mtime_ns for p in (res / "predictions").rglob("*.jsonl")}
    for p in ("tiny/sft-merged/config.json", "training/A/model/config.json", "training/sft/dynamics.jsonl"): stamps[res / p] = (res / p).stat().st_mtime_ns
    run_solvers(res / "embedded", res, reproduce_config("smoke"))
    run_tiny(res / "embedded", res, reproduce_config("smoke"))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_paper_profile_on_public_sample(shared_sample, tmp_path):
    "--profile paper on the real public sample (unseen and reasoning splits): solvers, Table 3 per disease, o1 traces in Fig. 6C."
    data = tmp_path / "data"
    data.mkdir()
    for split in ("unseen", "reasoning"): (data / f"{split}.jsonl").symlink_to(shared_sample / f"{split}_sample.jsonl")
    res = tmp_path / "results"
    cello1("reproduce", "--profile", "paper", "--data", data, "--results", res, "--figures", tmp_path / "figures",
           "--only", "table3_unseen_diseases", "fig6_reasoning_behaviour", cwd=ROOT)
    t3 = pd.read_csv(res / "table3_unseen_diseases.csv")
    ours = t3[t3.source == "reproduced (paper)"]
    assert set(ours.condition) == {"breast cancer", "melanoma", "systemic lupus erythematosus", "colorectal cancer", "Average"}
    marker = ours[ours.model == "marker solver (cellconsensus)"].set_index("condition")
    m = evaluate_file(res / "predictions" / "unseen" / "marker.jsonl", n_boot=0)
    assert marker.batches.drop("Average").sum() == m["n_batches"]
    fig6 = pd.read_csv(res / "fig6_reasoning_behaviour.csv").set_index("model")
    assert fig6.loc["o1 (public reasoning split)", "traces"] == len(read_jsonl(shared_sample / "reasoning_sample.jsonl"))


def test_reproduce_bad_input(tmp_path):
    p = cello1("reproduce", "--profile", "paper", "--results", tmp_path, check=False, cwd=ROOT)
    assert p.returncode != 0 and "needs --data" in p.stderr
    p = cello1("reproduce", "--profile", "paper", "--data", tmp_path / "nope", "--results", tmp_path, check=False, cwd=ROOT)
    assert p.returncode != 0 and "nope" in p.stderr and "not a directory" in p.stderr
    (tmp_path / "empty").mkdir()
    p = cello1("reproduce", "--profile", "paper", "--data", tmp_path / "empty", "--results", tmp_path / "r", check=False)
    assert p.returncode == 2 and "no test or unseen split; expected test.jsonl" in p.stderr and not (tmp_path / "r").exists()
    p = cello1("reproduce", "--only", "tabel2", "--results", tmp_path, check=False, cwd=ROOT)
    assert p.returncode != 0 and "tabel2" in p.stderr and "table2_main_results" in p.stderr


def test_similarity_from_a_local_encoder(tiny):
    "Table 12's encoder path: a locally saved Hugging Face model (here the tiny Qwen2, mean-pooled) gives cosine similarities."
    from cello1.metrics import evaluate_open, label_similarity, similarity_name
    s = label_similarity(["B cell", "natural killer cell", ""], ["B cell", "CD14-positive monocyte", "B cell"], encoder=str(tiny["model"]), pooling="mean")
    assert s[0] == pytest.approx(1.0, abs=1e-5) and -1 <= s[1] < 0.99999 and s[2] == 0
    m = evaluate_open(["<think>x</think>\n<answer>B cell | T cell</answer>"], ["B cell | natural killer cell"], encoder=str(tiny["model"]), pooling="mean")
    assert m["similarity_name"] == similarity_name(str(tiny["model"]), "mean") and "mean-pooled" in m["similarity_name"]
    assert 0.5 <= m["cell_acc"] <= 1.0


def test_a_paper_notebook_runs_with_papermill_from_any_directory(smoke, tmp_path):
    "papermill in a directory that is not the repository: reported.csv is found, parameters name the data."
    import json
    import shutil
    import subprocess
    import sys
    res = tmp_path / "results"
    shutil.copytree(smoke["results"] / "predictions", res / "predictions")
    exe = Path(sys.executable).parent / "papermill"
    r = subprocess.run([str(exe), str(ROOT / "paper" / "table2_main_results.ipynb"), "out.ipynb", "-p", "results_dir",
                        str(res), "-p", "data_dir", str(smoke["results"] / "embedded"), "-p", "n_boot", "0"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    t2 = pd.read_csv(res / "table2_main_results.csv")
    n = len(read_jsonl(smoke["results"] / "embedded" / "test.jsonl"))
    assert set(t2.setting[t2.source.str.startswith("reproduced")]) == {f"{n}-puzzle test split of embedded"}
    assert "papermill" in json.loads((tmp_path / "out.ipynb").read_text())["metadata"]


def test_nbdev_clean_keeps_the_papermill_parameters_tag(tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    nb = tmp_path / "copy.ipynb"
    shutil.copy(ROOT / "paper" / "table2_main_results.ipynb", nb)
    exe = Path(sys.executable).parent / "nbdev_clean"
    subprocess.run([str(exe), "--fname", str(nb)], cwd=ROOT, check=True, capture_output=True)
    tags = [c.get("metadata", {}).get("tags") for c in json.loads(nb.read_text())["cells"]]
    assert ["parameters"] in tags
