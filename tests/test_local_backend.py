"""The transformers backend on the tiny local model: generation, a LoRA adapter, and the hungarian repair."""
import json

import pytest

from conftest import cello1, read_jsonl

pytestmark = pytest.mark.server


def test_transformers_backend_with_adapter(tiny, tmp_path):
    "The backend loads the adapter: its logits differ from the base model's, and `predict` runs through it."
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from cello1.inference import TransformersBackend
    torch.manual_seed(0)  # the adapter's random (non-zero) init
    base = AutoModelForCausalLM.from_pretrained(tiny["model"])
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([list(range(3, 40))])
    with torch.no_grad():
        plain = TransformersBackend(str(tiny["model"])).lm(ids).logits
        lora = TransformersBackend(str(tiny["model"]), str(tmp_path / "adapter")).lm(ids).logits
    assert (plain - lora).abs().max() > 1e-3  # the adapter changes the model
    cello1("predict", "--backend", "transformers", "--model", tiny["model"], "--adapter", tmp_path / "adapter",
           "--puzzles", tiny["test"], "--max-tokens", "12", "--seed", "1", "--out", tmp_path / "lora.jsonl")
    rows = read_jsonl(tmp_path / "lora.jsonl")
    assert len(rows) == len(read_jsonl(tiny["test"])) and all(r["prediction"] for r in rows)


def test_hungarian_repair_is_one_to_one(tiny, tmp_path):
    out, two = tmp_path / "rep.jsonl", tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(tiny["test"])[:2]))  # scoring is N x N forward passes per puzzle
    cello1("predict", "--backend", "transformers", "--model", tiny["model"], "--puzzles", two, "--repair", "hungarian", "--out", out)
    cello1("eval", "--predictions", out, "--out", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["format_validity"] == 1.0 and m["uniqueness"] == 1.0
    assert all(r["repair"] == "hungarian" for r in read_jsonl(out))
    mixed = cello1("predict", "--backend", "transformers", "--model", tiny["model"], "--puzzles", two, "--out", out, check=False)
    assert mixed.returncode == 2 and "repair" in mixed.stderr
    api = cello1("predict", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--puzzles", tiny["test"],
                 "--repair", "hungarian", "--out", tmp_path / "x.jsonl", check=False)
    assert api.returncode == 2 and "needs --backend transformers" in api.stderr


def test_eval_response_length_with_a_real_tokenizer(tiny, embedded_build, tmp_path):
    cello1("solve", "--puzzles", embedded_build / "test.jsonl", "--solver", "marker", "--out", tmp_path / "p.jsonl")
    cello1("eval", "--predictions", tmp_path / "p.jsonl", "--tokenizer", tiny["model"], "--out", tmp_path / "tok.json")
    cello1("eval", "--predictions", tmp_path / "p.jsonl", "--out", tmp_path / "ws.json")
    tok, ws = (json.loads((tmp_path / f).read_text()) for f in ("tok.json", "ws.json"))
    assert tok["tokenizer"] == str(tiny["model"]) and ws["tokenizer"] == "whitespace"
    from transformers import AutoTokenizer
    t = AutoTokenizer.from_pretrained(tiny["model"])
    expect = sum(len(t.encode(r["prediction"], add_special_tokens=False)) for r in read_jsonl(tmp_path / "p.jsonl")) / tok["n_batches"]
    assert tok["response_length"] == pytest.approx(expect) and tok["response_length"] > ws["response_length"]
    (tmp_path / "nope").mkdir()  # there, but no tokenizer in it (a missing path: test_edges)
    bad = cello1("eval", "--predictions", tmp_path / "p.jsonl", "--tokenizer", tmp_path / "nope", check=False)
    assert bad.returncode == 2 and "--tokenizer: cannot load a tokenizer" in bad.stderr
