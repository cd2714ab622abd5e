"""The CLI refuses results that could be silently wrong (issue 12, item 1): answers joined from the wrong place,
duplicate puzzle ids, an output that is one of its inputs, a cross-validation with one group."""
import hashlib
import json

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
               "--prices", tmp_path / "missing.json"), "--prices: cannot read a JSON price table"),
             (("eval", "--predictions", pred, "--bootstrap", "-5"), "--bootstrap: must be >= 0")]
    for args, message in cases:
        r = cello1(*args, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "b").exists()
