"""Shared fixtures: the installed `cello1` command, an embedded build, the shared CellPuzzles sample."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the real CellPuzzles sample: CELLO1_SAMPLE_DIR names a copy of it, else ../shared/cellpuzzles-sample beside the clone
SHARED = Path(os.environ.get("CELLO1_SAMPLE_DIR") or ROOT.parent / "shared" / "cellpuzzles-sample")


def cello1(*args, check=True, cwd=None):
    "Run the installed `cello1` console script; return the CompletedProcess."
    exe = Path(sys.executable).parent / "cello1"
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"cello1 {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def read_jsonl(path):
    "Records of a JSONL file."
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def embedded_build(tmp_path_factory):
    "One `cello1 build --embedded` run, shared by the tests that only read it."
    out = tmp_path_factory.mktemp("embedded")
    cello1("build", "--embedded", "--out", out)
    return out


@pytest.fixture(scope="session")
def pbmc():
    "The embedded data as an in-memory AnnData (counts, CELLxGENE obs)."
    from cello1.data import load_embedded
    return load_embedded()


@pytest.fixture
def shared_sample():
    "The directory of real CellPuzzles records; skips when it is absent (a user's clone without CELLO1_SAMPLE_DIR)."
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not present (set CELLO1_SAMPLE_DIR to a copy of the CellPuzzles sample)")
    return SHARED


def free_port():
    "A free TCP port on 127.0.0.1."
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warm_up_format(model_dir, records, steps=200, lr=6e-3):
    "A few plain PyTorch steps so the tiny model's answers take the <think>/<answer> shape (a test fixture, not SFT)."
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from cello1.prompts import batch_messages
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    examples = []
    for r in records:
        chat = batch_messages(r) + [{"role": "assistant", "content": f"<think>markers</think>\n<answer>{r['answer']}</answer>"}]
        e = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)
        ids = torch.tensor(e["input_ids"])
        examples.append((ids, torch.where(torch.tensor(e["assistant_masks"]).bool(), ids, -100)))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        ids, labels = examples[step % len(examples)]
        model(input_ids=ids[None], labels=labels[None]).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(model_dir)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    "Embedded puzzles (6 test, 24 train) and a tiny Qwen2 model built and format-warmed on them, offline."
    pytest.importorskip("transformers")
    from cello1.tiny import build_tiny_model
    from cello1.puzzles import BuildConfig, build_embedded
    from cello1.records import load_cellpuzzles
    root = tmp_path_factory.mktemp("tiny")
    build_embedded(BuildConfig.embedded(per_n=10), root / "puzzles", progress=False)
    train = load_cellpuzzles(root / "puzzles", "train")
    model = build_tiny_model(root / "model", train, max_new_tokens=48)
    warm_up_format(model, train)
    return dict(root=root, model=model, test=root / "puzzles" / "test.jsonl", train=root / "puzzles" / "train.jsonl")


@pytest.fixture(scope="session")
def server(tiny):
    "A real `transformers serve` of the tiny model on 127.0.0.1 (OpenAI-compatible)."
    import os
    import signal
    import time
    import urllib.request
    port = free_port()
    exe = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(exe), "serve", str(tiny["model"]), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("transformers serve did not start")
    yield dict(url=url + "/v1", port=port, model=str(tiny["model"]))
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
