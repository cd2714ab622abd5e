"""The CLI refuses results that could be silently wrong (issue 12, item 1): answers joined from the wrong place,
duplicate puzzle ids, an output that is one of its inputs, a cross-validation with one group."""
import hashlib
import json

import numpy as np
import pandas as pd

from conftest import cello1, read_jsonl


def write_jsonl(path, rows):
    "Write records as JSON Lines; return the path."
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def digest(path):
    "sha256 of a file, to show it was not touched."
    return hashlib.sha256(path.read_bytes()).hexdigest()


def marker_predictions(embedded_build, tmp_path):
    "The marker solver's predictions on the embedded test split."
    out = tmp_path / "marker.jsonl"
    cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "marker", "--out", out)
    return out


def test_eval_takes_answers_from_the_puzzles(embedded_build, tmp_path):
    "Stored answers edited to match the predictions must not score 1.0 when --puzzles says otherwise."
    rows = read_jsonl(marker_predictions(embedded_build, tmp_path))
    edited = [{**r, "answer": r["prediction"].split("<answer>")[1].split("</answer>")[0]} for r in rows]
    f = write_jsonl(tmp_path / "edited.jsonl", edited)
    alone = cello1("eval", "--predictions", f, "--bootstrap", "0")
    assert "1.0000" in alone.stdout  # without --puzzles, the stored answers are all there is
    r = cello1("eval", "--predictions", f, "--puzzles", embedded_build / "test.jsonl", check=False)
    changed = sum(a["answer"] != b["answer"] for a, b in zip(rows, edited))
    assert changed > 0 and r.returncode == 2, r.stdout
    assert f"{changed} stored answers disagree" in r.stderr and "Traceback" not in r.stderr
    other = write_jsonl(tmp_path / "other.jsonl", [{**rows[0], "id": "not_a_puzzle"}])
    r = cello1("eval", "--predictions", other, "--puzzles", embedded_build / "test.jsonl", check=False)
    assert r.returncode == 2 and "'not_a_puzzle' is not a puzzle of" in r.stderr


def test_duplicate_puzzle_ids_are_refused(embedded_build, tmp_path):
    rows = read_jsonl(embedded_build / "test.jsonl")
    twice = write_jsonl(tmp_path / "twice.jsonl", rows + rows[:1])
    r = cello1("solve", "--puzzles", twice, "--solver", "random", "--out", tmp_path / "p.jsonl", check=False)
    assert r.returncode == 2 and f"puzzle id {rows[0]['id']!r} appears more than once" in r.stderr
    assert not (tmp_path / "p.jsonl").exists()
    pred = marker_predictions(embedded_build, tmp_path)
    r = cello1("eval", "--predictions", pred, "--puzzles", twice, check=False)
    assert r.returncode == 2 and "appears more than once" in r.stderr


def test_an_output_that_is_an_input_is_refused(embedded_build, tmp_path):
    puzzles = write_jsonl(tmp_path / "test.jsonl", read_jsonl(embedded_build / "test.jsonl"))
    before = digest(puzzles)
    r = cello1("solve", "--puzzles", puzzles, "--solver", "marker", "--out", puzzles, check=False)
    assert r.returncode == 2 and "--out is also an input" in r.stderr and digest(puzzles) == before
    pred = marker_predictions(embedded_build, tmp_path)
    before = digest(pred)
    r = cello1("eval", "--predictions", pred, "--out", pred, check=False)
    assert r.returncode == 2 and "--out is also an input" in r.stderr and digest(pred) == before


def test_cross_validation_needs_two_groups(embedded_build, tmp_path):
    "The embedded data is one donor, so every puzzle has the same context: nothing to hold out."
    r = cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "reference", "--cross-validate",
               "context", "--out", tmp_path / "p.jsonl", check=False)
    assert r.returncode == 2 and "needs two or more groups" in r.stderr


def test_a_missing_extra_says_which_to_install(embedded_build, tmp_path):
    "Run as if the `api` extra were not installed: one line naming the extra, no traceback."
    import subprocess
    import sys
    code = ("import sys; sys.modules['openai'] = None; from cello1.cli import main; "
            f"sys.exit(main(['predict', '--model', 'gpt-4o', '--puzzles', {str(embedded_build / 'test.jsonl')!r}, "
            f"'--out', {str(tmp_path / 'p.jsonl')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--backend openai: needs openai, which is not installed: pip install 'cello1[api]'" in r.stderr


def test_bad_values_are_one_line_and_status_2(embedded_build, tmp_path):
    "Each bad value is refused before anything runs, naming the option or the file, without a traceback."
    test = embedded_build / "test.jsonl"
    pred = marker_predictions(embedded_build, tmp_path)
    cases = [(("build", "--embedded", "--out", tmp_path / "b", "--seed", "-1"), "seed must be >= 0"),
             (("predict", "--model", "m", "--puzzles", test, "--out", tmp_path / "p.jsonl", "--concurrency", "0"),
              "--concurrency"),
             (("predict", "--model", "m", "--puzzles", test, "--out", tmp_path / "p.jsonl", "--max-tokens", "0"),
              "max_tokens must be >= 1"),
             (("predict", "--model", "m", "--puzzles", test, "--out", tmp_path / "p.jsonl",
               "--prices", tmp_path / "missing.json"), "--prices: no such file"),
             (("eval", "--predictions", pred, "--bootstrap", "-5"), "--bootstrap: must be >= 0")]
    for args, message in cases:
        r = cello1(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "b").exists()


def test_predict_resumes_only_with_the_same_settings(tiny, tmp_path):
    "A rerun with another temperature or model would mix two runs' answers in one file: refused, naming it."
    out = tmp_path / "p.jsonl"
    base = ("predict", "--backend", "transformers", "--model", tiny["model"], "--puzzles", tiny["test"],
            "--max-tokens", "4", "--out", out)
    cello1(*base, "--temperature", "0")
    stored = out.read_bytes()
    r = cello1(*base, "--temperature", "1", check=False)
    assert r.returncode == 2 and "sampling=" in r.stderr and "'temperature': 0.0" in r.stderr, r.stderr
    other = tmp_path / "copy"
    import shutil
    shutil.copytree(tiny["model"], other)
    r = cello1(*base[:4], other, *base[5:], "--temperature", "0", check=False)
    assert r.returncode == 2 and "model=" in r.stderr and str(other) in r.stderr, r.stderr
    assert out.read_bytes() == stored  # nothing was added or lost
    assert json.loads(cello1(*base, "--temperature", "0").stdout)["new"] == 0  # the same settings resume
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "p.jsonl"]  # no lock file left behind


def build_h5ad(adata, tmp_path, *extra, name="data.h5ad", out="o"):
    "Write `adata` to an h5ad and run `cello1 build` on it (not checked)."
    f = tmp_path / name
    adata.write_h5ad(f)
    return cello1("build", "--h5ad", f, "--out", tmp_path / out, "--max-n", "10", *extra, check=False)


def test_build_rejects_infinite_values(pbmc, tmp_path):
    a = pbmc.copy()
    a.X = a.X.toarray()
    a.X[:, 0] = np.inf
    r = build_h5ad(a, tmp_path)
    assert r.returncode == 2 and "data.h5ad: X: expression values must be non-negative, finite" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o" / "train.jsonl").exists()


def test_build_leaves_out_cells_without_expression(pbmc, tmp_path):
    "Puzzles of empty gene lists are not built; the cells and puzzles left out are counted."
    from cello1.prompts import parse_user_msg
    a = pbmc.copy()
    a.X = a.X.toarray()
    a.X[:100] = 0  # 100 real cells that express nothing
    r = build_h5ad(a, tmp_path)
    assert r.returncode == 0 and "cells express no gene; the " in r.stderr, r.stderr
    puzzles = read_jsonl(tmp_path / "o" / "train.jsonl") + read_jsonl(tmp_path / "o" / "test.jsonl")
    assert puzzles and all(all(parse_user_msg(p["user_msg"])["cells"]) for p in puzzles)
    assert not {c for p in puzzles for c in p["cell_ids"]} & set(a.obs_names[:100])
    a.X[:] = 0
    r = build_h5ad(a, tmp_path, out="zero")
    assert r.returncode == 2 and "no puzzles could be built" in r.stderr and "express no gene" in r.stderr


def test_unmatched_unseen_disease_is_an_error(tmp_path):
    r = cello1("build", "--embedded", "--out", tmp_path / "o", "--unseen-disease", "COVID-19", check=False)
    assert r.returncode == 2 and "--unseen-disease: 'COVID-19' matches no donor group" in r.stderr, r.stderr
    assert "(their diseases: normal)" in r.stderr and not (tmp_path / "o" / "manifest.json").exists()


def test_rebuild_leaves_no_stale_split_and_an_empty_split_is_named(pbmc, tmp_path):
    a = pbmc.copy()
    a.obs["donor_id"] = pd.Categorical([f"donor{i % 4}" for i in range(a.n_obs)])  # pseudo-donors (a fixture)
    a.obs["disease"] = pd.Categorical(np.where(a.obs["donor_id"] == "donor3", "lupus", "normal"))
    assert build_h5ad(a, tmp_path, "--unseen-disease", "lupus").returncode == 0
    assert (tmp_path / "o" / "unseen.jsonl").exists()
    r = build_h5ad(a, tmp_path, "--test-frac", "0")
    assert r.returncode == 0 and "the test split is empty" in r.stderr, r.stderr
    assert not (tmp_path / "o" / "unseen.jsonl").exists()
    notes = json.loads((tmp_path / "o" / "manifest.json").read_text())["notes"]
    assert any("unseen.jsonl: removed" in n for n in notes) and any("test split is empty" in n for n in notes)


def test_missing_paths_are_never_taken_for_hub_ids(embedded_build, tmp_path):
    "A local path that is not there is named at once, instead of minutes of hub retries offline."
    test, out = embedded_build / "test.jsonl", tmp_path / "p.jsonl"
    cases = [(("predict", "--backend", "transformers", "--model", tmp_path / "model", "--puzzles", test, "--out", out),
              "--model: no such file or directory"),
             (("predict", "--model", "m", "--puzzles", "some/typo.jsonl", "--out", out), "no such file or directory"),
             (("eval", "--predictions", marker_predictions(embedded_build, tmp_path), "--tokenizer",
               tmp_path / "tok"), "--tokenizer: no such file or directory"),
             (("merge", "--base", tmp_path / "base", "--adapter", tmp_path / "a", "--out", tmp_path / "m"),
              "--base: no such file or directory")]
    for args, message in cases:
        r = cello1(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not out.exists()


def test_a_server_that_is_not_there_fails_at_once_naming_the_url(embedded_build, tmp_path):
    from conftest import free_port
    url = f"http://127.0.0.1:{free_port()}/v1"
    r = cello1("predict", "--model", "m", "--base-url", url, "--puzzles", embedded_build / "test.jsonl",
               "--out", tmp_path / "p.jsonl", check=False)
    assert r.returncode == 2 and f"--base-url {url}: no server answers there" in r.stderr, r.stderr
    assert "retry" not in r.stderr and not (tmp_path / "p.jsonl").exists()


def test_the_real_sample_can_live_anywhere(tmp_path):
    "CELLO1_SAMPLE_DIR points the real-sample tests at a copy, for a clone that is not beside ../shared."
    import os
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, "-c", "import conftest; print(conftest.SHARED)"], cwd=ROOT / "tests",
                       env={**os.environ, "CELLO1_SAMPLE_DIR": str(tmp_path)}, capture_output=True, text=True)
    assert r.stdout.strip() == str(tmp_path), r.stderr


def test_outputs_that_cannot_be_written_are_refused_before_any_work(embedded_build, pbmc, tmp_path):
    "An --out that is a directory, a file, under a file or unwritable is named in one line before anything runs."
    test, afile = embedded_build / "test.jsonl", tmp_path / "afile"
    afile.write_text("x")
    h5ad = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(h5ad)
    cases = [(("build", "--embedded", "--out", "/proc/cello1"), "--out cannot be written: nothing can be created in /proc"),
             (("build", "--embedded", "--out", afile), "--out is a file; name a directory"),
             (("solve", "--puzzles", test, "--solver", "random", "--out", tmp_path), "--out is a directory; name a file"),
             (("solve", "--puzzles", test, "--solver", "random", "--out", afile / "p.jsonl"), "afile is a file, not a directory"),
             (("distill", "--model", "m", "--puzzles", test, "--out", afile), "--out is a file; name a directory"),
             (("annotate", h5ad, "--groupby", "louvain", "--candidates", "T cell", "--out", h5ad),
              "--out is also an input")]
    for args, message in cases:
        r = cello1(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert afile.read_text() == "x"


def test_progress_shows_in_a_log_file(embedded_build, tmp_path):
    "stderr that is not a terminal still gets progress, as whole lines (no carriage returns)."
    n = len(read_jsonl(embedded_build / "test.jsonl"))
    r = cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "marker", "--out", tmp_path / "p.jsonl")
    assert f"marker: 100%" in r.stderr and f"{n}/{n}" in r.stderr and "\r" not in r.stderr, r.stderr


def test_files_that_cannot_be_read_are_one_line(embedded_build, pbmc, tmp_path):
    "Bytes that are not UTF-8 and directories that hold no model are named in one line, without a traceback."
    test, binary, empty = embedded_build / "test.jsonl", tmp_path / "binary.txt", tmp_path / "empty"
    binary.write_bytes(b"\xff\xfe\x00labels")
    empty.mkdir()
    h5ad = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(h5ad)
    out = tmp_path / "p.jsonl"
    cases = [(("annotate", h5ad, "--groupby", "louvain", "--candidates-file", binary, "--out", tmp_path / "a.h5ad"),
              "binary.txt: not UTF-8 text (byte 0); expected candidate labels, one per line"),
             (("predict", "--model", "m", "--puzzles", test, "--out", out, "--prices", binary),
              "--prices: not UTF-8 text (byte 0); expected a JSON price table"),
             (("predict", "--backend", "transformers", "--model", empty, "--puzzles", test, "--out", out),
              "empty: --model: cannot load a model"),
             (("merge", "--base", empty, "--adapter", empty, "--out", tmp_path / "m"), "empty: --base: cannot load a model")]
    for args, message in cases:
        r = cello1(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
