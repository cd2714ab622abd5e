"""Real training on CPU with the tiny Qwen2 model: SFT (TRL + LoRA), merge, TRL GRPO with the batch reward,
submitit's local executor; and the verl launcher (dry run, Ray-on-Slurm script, verl's own config in `make test-verl`)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import cello1, read_jsonl

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def sft_data(tiny, tmp_path_factory):
    "Distillation-format SFT data for the tiny model: the marker solver plays the teacher (no LLM teacher offline)."
    out = tmp_path_factory.mktemp("sftdata") / "accepted.jsonl"
    from cello1.records import load_cellpuzzles
    from cello1.solvers import make_solver, solve_record
    marker = make_solver("marker")
    recs = [dict(r, response=solve_record(marker, r)) for r in load_cellpuzzles(tiny["train"])]
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


@pytest.fixture(scope="module")
def sft_run(tiny, sft_data, tmp_path_factory):
    "`cello1 sft --preset tiny` then `cello1 merge`."
    out = tmp_path_factory.mktemp("sft")
    cello1("sft", "--preset", "tiny", "--model", tiny["model"], "--data", sft_data, "--out", out / "run")
    cello1("merge", "--base", tiny["model"], "--adapter", out / "run" / "adapter", "--out", out / "merged")
    return out


def test_sft_loss_falls_adapter_saved(sft_run):
    rows = [r for r in read_jsonl(sft_run / "run" / "dynamics.jsonl") if "loss" in r]
    assert len(rows) >= 5 and rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["engine"] == "trl" and r["stage"] == "sft" for r in rows)
    assert (sft_run / "run" / "adapter" / "adapter_config.json").exists()
    cfg = json.loads((sft_run / "run" / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and {m.split(".")[-1] for m in cfg["target_modules"]} >= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_merged_model_loads_and_generates(sft_run, tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    merged = AutoModelForCausalLM.from_pretrained(sft_run / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny["model"])
    assert any(not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))
    cello1("predict", "--backend", "transformers", "--model", sft_run / "merged", "--puzzles", tiny["test"], "--max-tokens", "8",
           "--out", tmp_path / "p.jsonl")
    assert len(read_jsonl(tmp_path / "p.jsonl")) == len(read_jsonl(tiny["test"]))


def test_trl_grpo_logs_rewards_and_changes_weights(sft_run, tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM
    out, val = tmp_path / "grpo", tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(tiny["test"])[:2]))
    cello1("grpo", "--engine", "trl", "--preset", "tiny", "--model", sft_run / "merged", "--data", tiny["train"], "--val", val, "--out", out)
    rows = read_jsonl(out / "dynamics.jsonl")
    train = [r for r in rows if "reward" in r]
    assert len(train) == 3 and all(-1 <= r["reward"] <= 1 and r["response_length"] > 0 for r in train)
    assert any("val_batch_acc" in r for r in rows)
    before = AutoModelForCausalLM.from_pretrained(sft_run / "merged").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0


def test_submitit_local_executor_runs_sft(tiny, sft_data, tmp_path):
    r = json.loads(cello1("sft", "--preset", "tiny", "--model", tiny["model"], "--data", sft_data, "--out", tmp_path / "run",
                          "--max-steps", "2", "--executor", "local").stdout)
    assert r["job_id"] and r["result"]["steps"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert list((tmp_path / "run" / "slurm_logs").glob("*_result.pkl"))  # submitit really ran it


def test_sft_dry_run_runs_nothing(tiny, sft_data, tmp_path):
    r = json.loads(cello1("sft", "--preset", "paper", "--data", sft_data, "--out", tmp_path / "x", "--slurm", "--partition", "gpu",
                          "--nodes", "1", "--dry-run").stdout)
    assert r["dry_run"] and r["executor"]["partition"] == "gpu" and r["preset"]["lora_r"] == 256 and r["preset"]["learning_rate"] == 5e-5
    assert not (tmp_path / "x").exists()


def test_verl_dry_run_script(tiny, tmp_path):
    r = json.loads(cello1("grpo", "--engine", "verl", "--preset", "A", "--model", "/ckpt/sft-merged", "--data", tiny["train"],
                          "--val", tiny["test"], "--out", tmp_path / "v", "--dry-run", "--partition", "gpu",
                          "--verl-python", tmp_path / "none").stdout)
    script = r["sbatch_script"]
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gpus-per-node=8" in script and "nodes_array=($nodes)" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "reward.custom_reward_function.path=" in " ".join(r["command"]) and "VERL_FILE_LOGGER_PATH" in script
    assert script.rstrip().splitlines()[-1].startswith("python3 -c") and "verl_dynamics" in script  # metrics -> shared schema
    import pandas as pd
    df = pd.read_parquet(tmp_path / "v" / "data" / "train.parquet")
    assert set(df.columns) >= {"data_source", "prompt", "reward_model", "extra_info"} and len(df) == len(read_jsonl(tiny["train"]))
    assert df.iloc[0]["reward_model"]["ground_truth"] == read_jsonl(tiny["train"])[0]["answer"]
    no = cello1("grpo", "--engine", "verl", "--preset", "A", "--model", "m", "--data", tiny["train"], "--out", tmp_path / "w",
                "--verl-python", tmp_path / "none", check=False)
    assert no.returncode == 2 and "--slurm" in no.stderr


VERL_PY = os.environ.get("CELLO1_VERL_PYTHON", ".verl-venv/bin/python")


@pytest.mark.verl
@pytest.mark.parametrize("preset", ["A", "B", "C", "D"])
def test_verl_accepts_every_preset(preset):
    if not Path(VERL_PY).exists():
        pytest.skip("no verl venv (make test-verl builds it)")
    from cello1.grpo import grpo_preset, validate_verl_overrides, verl_overrides
    out = validate_verl_overrides(verl_overrides(grpo_preset(preset, model="/ckpt/m"), "/d/t.parquet", "/d/v.parquet", "/runs/x"), VERL_PY)
    assert out["verl"] == "0.9.1" and out["reward_name"] == "compute_score" and out["legacy_path"] is None
    assert out["reward_kwargs"] == {"reward": "dense" if preset == "D" else "batch"}
    assert out["adv_estimator"] == ("gae" if preset == "C" else "grpo") and out["n"] == 5 and out["nnodes"] == 2
    assert out["sample_score"]["score"] == 1.0  # verl loaded compute_score from the file and called it


@pytest.mark.verl
def test_verl_rejects_the_public_scripts_overrides():
    if not Path(VERL_PY).exists():
        pytest.skip("no verl venv (make test-verl builds it)")
    from cello1.core import InputError
    from cello1.grpo import grpo_preset, validate_verl_overrides, verl_overrides
    o = verl_overrides(grpo_preset("A", model="/ckpt/m"), "t", "v", "x")
    for bad in ("+reward.reward_manager=custom", "reward_model.micro_batch_size_per_gpu=2"):
        with pytest.raises(InputError):
            validate_verl_overrides(o + [bad], VERL_PY)
    legacy = [x for x in o if not x.startswith("reward.custom_reward_function.path")] + ["custom_reward_function.path=/x/metrics.py"]
    with pytest.raises(InputError):  # accepted by Hydra, silently ignored by verl: no reward function at all
        validate_verl_overrides(legacy, VERL_PY)
