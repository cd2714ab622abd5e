"""Inference and distillation against a real OpenAI-compatible server (`transformers serve` of a tiny Qwen2 model).

Faults (429, 5xx, dropped connections, delays) come from a small proxy in front of the real server (tests/proxy.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import cello1, read_jsonl
from proxy import FaultProxy

pytestmark = pytest.mark.server


@pytest.fixture
def proxy(server):
    "A fault proxy in front of the session's server; set `.plan` in the test."
    p = FaultProxy(server["port"])
    yield p
    p.close()


def keys(path):
    "(id, sample) keys of a prediction file."
    return [(r["id"], r["sample"]) for r in read_jsonl(path)]


def test_predict_batch_real_server_and_resume(server, tiny, proxy, tmp_path):
    out = tmp_path / "pred.jsonl"
    p = cello1("predict", "--backend", "openai", "--model", server["model"], "--base-url", proxy.url, "--puzzles", tiny["test"],
               "--samples", "2", "--max-tokens", "40", "--temperature", "0.8", "--out", out)
    recs = read_jsonl(out)
    n = len(read_jsonl(tiny["test"]))
    assert sorted(keys(out)) == sorted((r["id"], k) for r in read_jsonl(tiny["test"]) for k in range(2))
    assert len(proxy.forwarded()) == 2 * n  # the server ignores n: one request per sample, none repeated
    assert all(r["model"] == server["model"] and r["backend"] == "openai" and r["mode"] == "batch" for r in recs)
    assert all(r["prompt_tokens"] > 500 and 0 < r["completion_tokens"] <= 40 for r in recs)
    rebuilt = [r for r in recs if r["reasoning_rebuilt"]]
    assert rebuilt and all(r["prediction"].startswith("<think>") for r in rebuilt)  # reasoning_content put back
    before = out.read_bytes()
    again = json.loads(cello1("predict", "--backend", "openai", "--model", server["model"], "--base-url", proxy.url,
                              "--puzzles", tiny["test"], "--samples", "2", "--max-tokens", "40", "--temperature", "0.8",
                              "--out", out).stdout)
    assert again["new"] == 0 and out.read_bytes() == before and len(proxy.forwarded()) == 2 * n
    cello1("eval", "--predictions", out, "--out", tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["n_batches"] == 2 * n


def test_retries_on_429_5xx_and_drops(server, tiny, proxy, tmp_path, capsys):
    from cello1.inference import OpenAIBackend, SamplingConfig, predict
    proxy.plan = ["429", "ok", "500", "drop", "ok", "503", "ok"]
    backend = OpenAIBackend(server["model"], proxy.url, backoff=0.01, concurrency=1, max_retries=8)  # one at a time: a deterministic fault order
    s = predict(tiny["test"], backend, tmp_path / "p.jsonl", cfg=SamplingConfig(max_tokens=16), progress=False)
    n = len(read_jsonl(tiny["test"]))
    assert not s["failed"] and s["stored"] == n and s["retries"] >= 3
    assert capsys.readouterr().err.count("cello1: retry ") == s["retries"]  # one line per retry
    outcomes = Counter(e["outcome"] for e in proxy.log)
    assert outcomes["429"] and outcomes["500"] and outcomes["drop"] and len(proxy.forwarded()) == n


def test_hard_errors_reported_then_retried(server, tiny, proxy, tmp_path):
    proxy.plan = ["400"]
    out = tmp_path / "p.jsonl"
    args = ("predict", "--model", server["model"], "--base-url", proxy.url, "--puzzles", tiny["test"], "--max-tokens", "8", "--out", out)
    p = cello1(*args, check=False)
    assert p.returncode == 1 and json.loads(p.stdout)["failed"]
    assert not out.exists() or read_jsonl(out) == []
    proxy.plan = ["ok"]
    assert json.loads(cello1(*args).stdout)["stored"] == len(read_jsonl(tiny["test"]))


def test_cell_and_open_modes(server, tiny, tmp_path):
    out = tmp_path / "cell.jsonl"
    cello1("predict", "--model", server["model"], "--base-url", server["url"], "--puzzles", tiny["test"], "--mode", "cell",
           "--max-tokens", "12", "--out", out)
    recs, parts = read_jsonl(out), read_jsonl(str(out) + ".cells.jsonl")
    assert len(parts) == sum(r["cells"] for r in recs) and all(r["mode"] == "cell" for r in recs)
    assert all(r["prediction"].count("Cell ") == r["cells"] for r in recs)
    mixed = cello1("predict", "--model", server["model"], "--base-url", server["url"], "--puzzles", tiny["test"], "--out", out, check=False)
    assert mixed.returncode == 2 and "holds predictions with mode='cell'" in mixed.stderr
    cello1("predict", "--model", server["model"], "--base-url", server["url"], "--puzzles", tiny["test"], "--mode", "open",
           "--max-tokens", "12", "--out", tmp_path / "open.jsonl")
    assert len(read_jsonl(tmp_path / "open.jsonl")) == len(read_jsonl(tiny["test"]))


def test_distill_survives_sigkill_without_loss_or_repeats(server, tiny, proxy, tmp_path):
    from cello1.metrics import gold_items, write_response
    from cello1.prompts import batch_messages
    proxy.plan = ["delay:0.3"]
    planted = read_jsonl(tiny["test"])[0]  # one puzzle gets a correct answer, so distillation has one to accept
    right = write_response("planted", gold_items(planted["answer"]))
    proxy.replies = {batch_messages(planted)[-1]["content"]: right}
    out = tmp_path / "d"
    cmd = [str(Path(sys.executable).parent / "cello1"), "distill", "--model", server["model"], "--base-url", proxy.url,
           "--puzzles", tiny["test"], "--samples", "3", "--max-tokens", "24", "--concurrency", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    raw = out / "raw.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not raw.exists() or len(raw.read_text().splitlines()) < 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored_before = raw.read_bytes()
    done_before = Counter(r["id"] for r in read_jsonl(raw))
    n_log = len(proxy.log)
    assert 4 <= sum(done_before.values()) < 3 * len(read_jsonl(tiny["test"]))
    proxy.plan = ["ok"]
    subprocess.run(cmd, check=True, capture_output=True)
    after = raw.read_bytes()
    assert after.startswith(stored_before)  # nothing stored was lost
    ks = keys(raw)
    assert len(ks) == len(set(ks)) == 3 * len(read_jsonl(tiny["test"]))  # every sample once
    users = {r["id"]: None for r in read_jsonl(tiny["test"])}
    import hashlib
    by_hash = {hashlib.sha1(batch_messages(r)[-1]["content"].encode()).hexdigest(): r["id"] for r in read_jsonl(tiny["test"])}
    asked_after = Counter(by_hash[e["user"]] for e in proxy.log[n_log:])
    for id_, k in done_before.items():
        assert asked_after[id_] <= 3 - k  # stored samples were never requested again
    stats = json.loads((out / "stats.json").read_text())
    assert stats["responses"] == 3 * len(users) and stats["puzzles"] == len(users)
    acc = read_jsonl(out / "accepted.jsonl")
    assert planted["id"] in {a["id"] for a in acc} and stats["accepted_puzzles"] == len({a["id"] for a in acc})
    assert all({"system_msg", "user_msg", "answer", "response"} <= set(a) for a in acc)
    assert next(a for a in acc if a["id"] == planted["id"])["response"] == right


def test_ctrl_c_says_what_is_kept_and_how_to_resume(server, tiny, proxy, tmp_path):
    "SIGINT mid-predict: one line with the stored count and the way on, status 130, no traceback, no lock file."
    proxy.plan = ["delay:0.3"]
    out = tmp_path / "p.jsonl"
    cmd = [str(Path(sys.executable).parent / "cello1"), "predict", "--model", server["model"], "--base-url", proxy.url,
           "--puzzles", str(tiny["test"]), "--samples", "3", "--max-tokens", "8", "--concurrency", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stored = len(read_jsonl(out))
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"cello1: interrupted: {stored} responses are stored in {out}" in err and "run the same command again" in err
    assert 2 <= stored < 3 * len(read_jsonl(tiny["test"])) and sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_api_key_never_written(server, tiny, proxy, tmp_path, monkeypatch):
    sentinel = "sk-cello1-SENTINEL-3f9a7c"
    env = {**os.environ, "MY_KEY": sentinel}
    exe = str(Path(sys.executable).parent / "cello1")
    outs = []
    for cmd in (["predict", "--out", str(tmp_path / "p.jsonl")], ["distill", "--samples", "1", "--out", str(tmp_path / "d")]):
        r = subprocess.run([exe, *cmd, "--model", server["model"], "--base-url", proxy.url, "--api-key-env", "MY_KEY",
                            "--puzzles", str(tiny["test"]), "--max-tokens", "8"], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs += [r.stdout, r.stderr]
    assert any(sentinel in e["auth"] for e in proxy.log)  # the key was really used...
    written = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(sentinel.encode() in w for w in written)  # ...and never written
    assert not any(sentinel in o for o in outs)
