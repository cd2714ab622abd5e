"""Metrics and rewards: exact on constructed cases, and unbreakable on any input (hypothesis)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cello1.core import InputError
from cello1.metrics import answer_items, batch_reward, compute_score, dense_reward, evaluate, is_valid, score_batch, trl_batch_reward, trl_dense_reward
from cello1.records import read_predictions

labels = st.text(alphabet=st.characters(blacklist_characters="|<>\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=12
                 ).map(str.strip).filter(bool)
anything = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300), st.binary(max_size=50),
                     st.lists(st.text(max_size=20), max_size=5), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
TAGGY = st.lists(st.sampled_from(list("ab |\n") + ["<think>", "</think>", "<answer>", "</answer>"]), max_size=40).map("".join)


def respond(items, think="reasoning"):
    "A strict-format response."
    return f"<think>{think}</think>\n<answer>{' | '.join(items)}</answer>"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(anything, TAGGY), st.one_of(anything, TAGGY))
def test_nothing_raises_and_values_are_bounded(response, answer):
    s = score_batch(response, answer)
    assert 0 <= s["cell_acc"] <= 1 and s["batch_acc"] in (0.0, 1.0) and 0 <= s["uniqueness"] <= 1 and s["format"] in (0.0, 1.0)
    assert batch_reward(response, answer) in (-1.0, 0.0, 1.0)
    assert -1.0 <= dense_reward(response, answer) <= 1.0
    assert compute_score("cellpuzzles", response, answer)["score"] in (-1.0, 0.0, 1.0)
    assert trl_batch_reward([response], answer=[answer]) == [batch_reward(response, answer)]
    assert trl_dense_reward([response], answer=[answer]) == [dense_reward(response, answer)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(labels, min_size=3, max_size=15, unique_by=str.casefold), st.data())
def test_exact_values_on_constructed_responses(gold, data):
    answer = " | ".join(gold)
    perfect = respond(gold)
    assert is_valid(perfect) and score_batch(perfect, answer)["batch_acc"] == 1.0
    assert batch_reward(perfect, answer) == 1.0 and dense_reward(perfect, answer) == 1.0
    perm = data.draw(st.permutations(gold))
    hits = sum(p == g for p, g in zip(perm, gold))
    s = score_batch(respond(perm), answer)
    assert s["cell_acc"] == pytest.approx(hits / len(gold)) and s["uniqueness"] == 1.0
    assert batch_reward(respond(perm), answer) == float(hits == len(gold))
    assert dense_reward(respond(perm), answer) == pytest.approx((hits / len(gold) + float(hits == len(gold))) / 2)
    broken = perfect.replace("</think>\n", "</think>\n\n")
    assert batch_reward(broken, answer) == -1.0 and score_batch(broken, answer)["cell_acc"] == 0.0
    upper = [g.upper() for g in gold]  # the comparison is casefolded; upper() keeps it only where casefold agrees ('ı' -> 'I')
    same = all(u.casefold() == g.casefold() for u, g in zip(upper, gold))
    assert score_batch(respond(upper), answer)["batch_acc"] == float(same)
    short = respond(gold[:-1])
    assert dense_reward(short, answer) == -1.0 and batch_reward(short, answer) == 0.0
    dup = respond([gold[0]] * len(gold))
    assert score_batch(dup, answer)["uniqueness"] == pytest.approx(1 / len(gold)) and dense_reward(dup, answer) == -1.0


def test_huge_and_unicode_inputs():
    big = respond(["T cell"] * 100_000, think="x" * 1_000_000)
    assert score_batch(big, "T cell | B cell")["n_pred"] == 100_000
    assert score_batch(respond(["細胞 α", "β-cell"]), "細胞 α | β-cell")["batch_acc"] == 1.0


def test_trl_conversational_and_verl_call_conventions():
    g = "T cell | B cell"
    conv = [[{"role": "assistant", "content": respond(["T cell", "B cell"])}], [{"role": "assistant", "content": None}]]
    assert trl_batch_reward(conv, answer=[g, g], prompts=["p", "p"]) == [1.0, -1.0]
    out = compute_score(data_source="cellpuzzles", solution_str=respond(["B cell", "T cell"]), ground_truth=g,
                        extra_info={"index": 3}, reward="dense")
    assert out == {"score": 0.0, "acc": 0.0, "cell_acc": 0.0, "batch_acc": 0.0, "uniqueness": 1.0, "format": 1.0}


def test_evaluate_aggregates_and_intervals():
    rng = np.random.default_rng(0)
    gold = [[f"type{j}" for j in range(n)] for n in rng.integers(8, 16, 200)]
    resp = [respond(list(rng.permutation(g)) if i % 3 else g) for i, g in enumerate(gold)]
    m = evaluate(resp, [" | ".join(g) for g in gold], n_boot=500)
    per = m["per_batch"]
    assert m["cell_acc"] == pytest.approx(np.mean([p["cell_acc"] for p in per]))
    assert m["batch_acc"] == pytest.approx(np.mean([i % 3 == 0 for i in range(200)]), abs=0.01)
    assert sum(v["count"] for v in m["by_n"].values()) == 200
    for k in ("cell_acc", "batch_acc", "cell_acc_micro"):
        lo, hi = m["ci95"][k]
        assert lo <= m[k] <= hi and hi - lo < 0.3


def test_read_predictions_errors(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prediction": "x", "answer": "T cell | B cell"}\nnot json\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: not valid JSON"):
        read_predictions(f)
    f.write_text('{"id": "zz", "prediction": "x"}\n')
    with pytest.raises(InputError, match="prediction 'zz' has no answer"):
        read_predictions(f)
    with pytest.raises(InputError, match="no such file"):
        read_predictions(tmp_path / "absent.jsonl")
