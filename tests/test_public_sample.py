"""The real CellPuzzles records in ../shared parse with the same code that writes ours (skipped without ../shared)."""
import json

import pytest

from cello1.core import InputError
from cello1.prompts import format_user_msg, parse_user_msg
from cello1.records import check_record, load_cellpuzzles, puzzle_table

FILES = ["test_sample.jsonl", "reasoning_sample.jsonl", "unseen_sample.jsonl"]


@pytest.mark.parametrize("name", FILES)
def test_real_records_parse_and_round_trip(shared_sample, name):
    recs = load_cellpuzzles(shared_sample / name)
    assert len(recs) >= 15
    for r in recs:
        p = check_record(r)
        assert 8 <= len(p["cells"]) <= 15
        assert all(len(g) in (49, 50) for g in p["cells"])
        # our writer reproduces the public text exactly from the parsed parts
        assert format_user_msg(p["context"] + " ", p["cells"], p["candidates"]) == r["user_msg"]


def test_real_reasoning_answers_match(shared_sample):
    for r in load_cellpuzzles(shared_sample / "reasoning_sample.jsonl"):
        inner = r["assistant_msg"].split("<answer>")[1].split("</answer>")[0]
        assert inner.strip() == r["answer"]


def test_real_context_attributes(shared_sample):
    tab = puzzle_table(load_cellpuzzles(shared_sample / "test_sample.jsonl"))
    assert tab["tissue"].notna().mean() > 0.9
    assert set(tab["sex"].dropna()) <= {"male", "female"}
    assert (tab["age_group"] != "unknown").mean() > 0.5


def test_directory_and_split(shared_sample, tmp_path):
    (tmp_path / "test.jsonl").write_text((shared_sample / "test_sample.jsonl").read_text())
    assert len(load_cellpuzzles(tmp_path, "test")) == 45
    with pytest.raises(InputError, match="no train.jsonl"):
        load_cellpuzzles(tmp_path, "train")


def test_corrupt_record_named(shared_sample, tmp_path):
    recs = [json.loads(l) for l in (shared_sample / "test_sample.jsonl").read_text().splitlines()]
    recs[3]["answer"] = recs[3]["answer"].rsplit(" | ", 1)[0]
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(InputError, match=r"t.jsonl record 3 \(test_\d+\): answer has"):
        load_cellpuzzles(f)


def test_parquet_and_json_array(shared_sample, tmp_path):
    import pandas as pd
    recs = load_cellpuzzles(shared_sample / "test_sample.jsonl")
    pd.DataFrame(recs).to_parquet(tmp_path / "test.parquet")
    (tmp_path / "arr.json").write_text(json.dumps(recs))
    assert [r["id"] for r in load_cellpuzzles(tmp_path / "test.parquet")] == [r["id"] for r in recs]
    assert len(load_cellpuzzles(tmp_path / "arr.json")) == len(recs)


def test_parse_errors_are_clear():
    with pytest.raises(InputError, match="must start with 'Context:'"):
        parse_user_msg("Cells: nothing")


def test_public_reasoning_split_as_sft_data(shared_sample):
    from cello1.sft import load_sft_examples
    ex = load_sft_examples(shared_sample / "reasoning_sample.jsonl")
    assert len(ex) == 15
    for e in ex:
        roles = [m["role"] for m in e["messages"]]
        assert roles == ["system", "user", "assistant"] and e["messages"][2]["content"].startswith("<think>")
    answer_only = load_sft_examples(shared_sample / "test_sample.jsonl", target="answer")
    assert all(e["messages"][2]["content"].startswith("<think>\n</think>\n<answer>") for e in answer_only)
