"""Bad input, faults and interruptions: one-line errors that name the culprit, nothing lost.

Each bad input runs against a run directory that already holds a user's file and against data
files whose bytes are recorded first: after the failure both are byte-for-byte as they were."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import prefopt.checkpoints as checkpoints
import prefopt.training.loop as trainer_module
from prefopt.cli import to_config
from prefopt.errors import ConfigError, TrainingError
from prefopt.training import train

CONF = str(Path(__file__).resolve().parent.parent / "conf")
FAST = ["logger=none", "model=tiny", "data=renders", "eval.num_samples=0", "lora.enabled=true", "trainer=smoke",
        "trainer.max_steps=4", "trainer.log_every=1", "trainer.batch_size=4", "data.num_samples=16"]


def _config(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=[*FAST, *overrides]))


def _snapshot(*roots: Path) -> dict[str, str]:
    """SHA-256 of every file under ``roots``."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---- data: a JSONL manifest of files ----------------------------------------------------------------

def _image(path: Path, seed: int, size=(12, 12)) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path.name


def _video(path: Path, frames: int, size: int = 16, level: int = 0) -> str:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (size, size))
    for i in range(frames):
        writer.write(np.full((size, size, 3), level + 30 * i, np.uint8))
    writer.release()
    return path.name


@pytest.fixture
def data_dir(tmp_path):
    """Eight good pairs (8x8 after resizing) and the files the bad rows point at."""
    root = tmp_path / "data"
    root.mkdir()
    rows = [{"winner": _image(root / f"w{i}.png", 2 * i), "loser": _image(root / f"l{i}.png", 2 * i + 1),
             "reward_w": 0.9, "reward_l": 0.1} for i in range(8)]
    _image(root / "wide.png", 100, size=(12, 20))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 10)
    Image.open(root / "w0.png").save(root / "w0_copy.png")
    _video(root / "clip3.mp4", 3)
    clips = [{"winner": _video(root / f"cw{i}.mp4", 4, level=10 * i),
              "loser": _video(root / f"cl{i}.mp4", 4, level=10 * i + 5)} for i in range(8)]
    return root, {"images": rows, "clips": clips}


def _manifest(root: Path, rows: list, name: str = "pairs.jsonl") -> Path:
    path = root / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


BAD_ROWS = {  # bad row (appended after the good rows, so it is line 9) -> what the message must say
    "missing file": ({"winner": "nowhere.png", "loser": "l0.png"}, "winner {root}/nowhere.png: no such file"),
    "corrupt image": ({"winner": "corrupt.png", "loser": "l0.png"}, "winner {root}/corrupt.png: not a readable image"),
    "corrupt video": ({"winner": "corrupt.mp4", "loser": "l0.png"}, "winner {root}/corrupt.mp4: not a readable video"),
    "shape mismatch": ({"winner": "wide.png", "loser": "l0.png"}, "winner is 12x20 but loser is 12x12"),
    "nan reward": ('{"winner": "w0.png", "loser": "l0.png", "reward_w": NaN, "reward_l": 0.1}', "reward_w is nan, not finite"),
    "inf reward": ('{"winner": "w0.png", "loser": "l0.png", "reward_w": 0.9, "reward_l": -Infinity}', "reward_l is -inf, not finite"),
    "reward outside [0, 1]": ({"winner": "w0.png", "loser": "l0.png", "reward_w": 3, "reward_l": 0.1}, "reward_w is 3, outside [0, 1]"),
    "winner below loser": ({"winner": "w0.png", "loser": "l0.png", "reward_w": 0.2, "reward_l": 0.7}, "reward_w 0.2 <= reward_l 0.7"),
    "winner is loser (path)": ({"winner": "w0.png", "loser": "w0.png"}, "winner and loser are the same image"),
    "winner is loser (bytes)": ({"winner": "w0.png", "loser": "w0_copy.png"}, "winner and loser are the same image"),
    "not json": ('{"winner": "w0.png", ', "Expecting property name"),
    "no loser": ({"winner": "w0.png"}, "no 'loser' path (the objective is paired)"),
    "wrong frame count": ({"winner": "clip3.mp4", "loser": "l0.png"}, "has 3 frames, data.num_frames=4"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_each_bad_row_is_one_line_naming_file_and_row(tmp_path, model_cache, data_dir, case):
    root, rows = data_dir
    bad, expected = BAD_ROWS[case]
    manifest = _manifest(root, [*rows["clips" if case == "wrong frame count" else "images"], bad])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("the user's notes")
    before = _snapshot(root, run_dir)
    frames = ["data.num_frames=4", "model=tiny_video"] if case == "wrong frame count" else []
    with pytest.raises(ConfigError) as error:
        train(_config("objective=dpo", "data=files", f"data.path={manifest}", *frames), run_dir)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{manifest}:9: ")
    assert expected.format(root=root) in message
    assert message.endswith("data.on_bad=skip drops bad rows")
    assert _snapshot(root, run_dir) == before  # nothing written, nothing lost


def test_skip_drops_bad_rows_logs_them_and_trains(tmp_path, model_cache, data_dir, caplog):
    root, rows = data_dir
    rows = rows["images"]
    bad = [BAD_ROWS["missing file"][0], BAD_ROWS["corrupt image"][0], BAD_ROWS["winner is loser (path)"][0]]
    manifest = _manifest(root, [*rows, *bad])
    with caplog.at_level("WARNING", logger="prefopt"):
        summary = train(_config("objective=gapo", "data=files", f"data.path={manifest}", "data.on_bad=skip",
                                "data.image_size=8", "model.config.sample_size=8"), tmp_path / "run")
    assert summary["steps"] == 4
    warning = caplog.text
    assert "dropped 3 of 11 rows" in warning
    for line in (9, 10, 11):
        assert f"{manifest}:{line}:" in warning


def test_validate_command_lists_every_bad_row_and_writes_nothing(tmp_path, data_dir):
    root, rows = data_dir
    manifest = _manifest(root, [*rows["images"], BAD_ROWS["missing file"][0], BAD_ROWS["nan reward"][0]])
    env = {**os.environ, "PREFOPT_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "prefopt.validate", "objective=dpo", "data=files", f"data.path={manifest}",
               f"hydra.run.dir={tmp_path / 'out'}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{manifest}:9: winner") and lines[1].startswith(f"{manifest}:10: reward_w is nan")
    assert lines[2] == f"{manifest}: 10 rows, 8 valid, 2 bad (paired); prompts: 1 distinct"
    assert not (tmp_path / "cache").exists()  # a check streams: it decodes row by row and keeps nothing


def test_empty_manifest_and_missing_manifest(tmp_path, model_cache, data_dir):
    root, _ = data_dir
    empty = _manifest(root, [])
    with pytest.raises(ConfigError, match=f"data.path: {empty}: the manifest has no rows"):
        train(_config("objective=ipa", "data=files", f"data.path={empty}"), tmp_path / "run")
    with pytest.raises(ConfigError, match=f"data.path: {root / 'none.jsonl'}: no such file"):
        train(_config("objective=ipa", "data=files", f"data.path={root / 'none.jsonl'}"), tmp_path / "run")


# ---- configuration ------------------------------------------------------------------------------------

BAD_CONFIGS = [
    (["objective.beta=0"], "objective.beta must be > 0"),
    (["objective=gapo", "objective.beta=-5"], "objective.beta must be > 0"),
    (["objective=nonsense"], "objective=nonsense: no such option"),
    (["objective=dpo", "data=mix"], "data=mix is the unpaired pretraining mixture"),
    (["data.on_bad=maybe"], "data.on_bad must be one of ['fail', 'skip']"),
    (["trainer.max_nonfinite_steps=0"], "trainer.max_nonfinite_steps must be > 0"),
    (["trainer.keep_checkpoints=0"], "trainer.keep_checkpoints must be > 0"),
    (["hand_aware.lambda=0.5"], "hand_aware.lambda must be >= 1"),
]


@pytest.mark.parametrize("overrides, expected", BAD_CONFIGS, ids=[" ".join(o) for o, _ in BAD_CONFIGS])
def test_bad_configs_fail_at_start_up_with_the_key(tmp_path, overrides, expected):
    env = {**os.environ, "PREFOPT_CACHE": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "prefopt.train", *FAST, *overrides, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (run_dir / "metrics.jsonl").exists()


def test_gapo_on_data_without_rewards_fails_before_training(tmp_path, model_cache, data_dir):
    root, rows = data_dir
    manifest = _manifest(root, [{"winner": r["winner"], "loser": r["loser"]} for r in rows["images"]])
    with pytest.raises(ConfigError, match=f"objective=gapo reads reward_w; data.path={manifest} has no rewards"):
        train(_config("objective=gapo", "data=files", f"data.path={manifest}"), tmp_path / "run")


def test_an_earlier_run_is_never_overwritten_without_overwrite(tmp_path, model_cache):
    run_dir = tmp_path / "run"
    train(_config("objective=ipa"), run_dir)
    before = _snapshot(run_dir)
    with pytest.raises(ConfigError, match=f"trainer.overwrite: {run_dir} already holds a run"):
        train(_config("objective=dpo"), run_dir)
    assert _snapshot(run_dir) == before
    with pytest.raises(ConfigError, match="it has no checkpoint to resume from; replace it with trainer.overwrite=true"):
        train(_config("objective=dpo", "trainer.resume=auto"), run_dir)  # a finished run: nothing to resume
    assert _snapshot(run_dir) == before
    train(_config("objective=dpo", "trainer.overwrite=true"), run_dir)
    assert "implicit_acc" in _metrics(run_dir)[0] and len(_metrics(run_dir)) == 4  # replaced, not appended


def test_resume_from_something_that_is_not_a_checkpoint(tmp_path, model_cache):
    with pytest.raises(ConfigError, match=f"trainer.resume: {tmp_path} is not a prefopt checkpoint"):
        train(_config(f"trainer.resume={tmp_path}"), tmp_path / "run")


# ---- faults during training ----------------------------------------------------------------------

def _inject(monkeypatch, failing_calls: set[int], error: BaseException | None = None):
    """batch_loss returns a NaN loss (or raises ``error``) on the given calls (1-based)."""
    original, calls = trainer_module.batch_loss, {"n": 0}

    def patched(*args, **kwargs):
        calls["n"] += 1
        loss, metrics = original(*args, **kwargs)
        if calls["n"] in failing_calls:
            if error is not None:
                raise error
            loss = loss * float("nan")
        return loss, metrics

    monkeypatch.setattr(trainer_module, "batch_loss", patched)


def test_a_nan_step_is_skipped_and_the_run_continues(tmp_path, model_cache, monkeypatch):
    _inject(monkeypatch, {2})
    summary = train(_config("objective=dpo", "trainer.max_steps=5"), tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert summary["steps"] == 5 and summary["skipped_steps"] == 1
    assert [r["step"] for r in rows] == [1, 3, 4, 5]  # step 2 logged nothing: all its batches were skipped
    assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 1]
    assert all(math.isfinite(r["loss"]) for r in rows)
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "run" / "final" / "pytorch_lora_weights.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_repeated_nans_stop_with_the_last_good_checkpoint_intact(tmp_path, model_cache, monkeypatch):
    run_dir = tmp_path / "run"
    _inject(monkeypatch, set(range(4, 100)))
    with pytest.raises(TrainingError) as error:
        train(_config("objective=dpo", "trainer.max_steps=20", "trainer.checkpoint_every=2",
                      "trainer.max_nonfinite_steps=3"), run_dir)
    message = str(error.value)
    assert "\n" not in message
    assert "3 steps in a row with a non-finite loss or gradient (up to step 6" in message
    assert f"Last good checkpoint: {run_dir / 'checkpoints' / 'step_2'}" in message
    assert [p.name for p in checkpoints.checkpoint_dirs(run_dir)] == ["step_2"]  # none written during the NaNs
    monkeypatch.undo()
    summary = train(_config("objective=dpo", "trainer.max_steps=4", "trainer.resume=auto"), run_dir)
    assert summary["steps"] == 4 and [r["step"] for r in _metrics(run_dir)] == [1, 2, 3, 4]


def test_out_of_memory_names_the_batch_size_and_the_remedy(tmp_path, model_cache, monkeypatch):
    _inject(monkeypatch, {2}, torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(TrainingError, match="out of memory at step 2 with trainer.batch_size=4: lower it and raise "
                                            "trainer.gradient_accumulation_steps"):
        train(_config("objective=ipa"), tmp_path / "run")


@pytest.mark.parametrize("every, crash", [(3, 5), (1, 6)])  # resumed where a segment starts / inside one
def test_resume_after_a_crash_continues_to_the_same_weights(tmp_path, model_cache, monkeypatch, every, crash):
    """HG-DPO's moving reference and a second round of model-made data (data=synth: rounds re-sample
    the model). Segments: (round 0: easy 2, normal 1), (round 1: normal 1, hard 2)."""
    overrides = ["objective=hgdpo", "objective.reference=previous_stage", "lora.enabled=false",
                 "trainer.ema_decay=0.9", "trainer.rounds=2", "trainer.learning_rate=1e-3",
                 "trainer.max_steps=6", f"trainer.checkpoint_every={every}", "data=synth", "model=base",
                 "data.num_samples=64", "eval.num_samples=0"]
    train(_config(*overrides), tmp_path / "straight")
    _inject(monkeypatch, {crash}, RuntimeError("the machine died"))
    with pytest.raises(RuntimeError, match="the machine died"):
        train(_config(*overrides), tmp_path / "resumed")
    monkeypatch.undo()
    train(_config(*overrides, "trainer.resume=auto"), tmp_path / "resumed")
    straight, resumed = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    steps = [r for r in resumed if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in steps] == [r["loss"] for r in straight if "loss" in r]
    pools = [(r["step"], r["pool/good_rate"]) for r in resumed if "pool/good_rate" in r]
    assert pools == [(r["step"], r["pool/good_rate"]) for r in straight if "pool/good_rate" in r]  # once per round
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "final" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, model_cache, monkeypatch):
    run_dir = tmp_path / "run"
    overrides = ["objective=dpo", "trainer.max_steps=8", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=3"]
    original = checkpoints.fsync_tree

    def crash_on_third_checkpoint(path):
        if path.name == ".tmp-step_6":
            # the checkpoint's files are written but not yet made durable: truncate one, as a crash would
            weights = next(path.glob("*.safetensors"))
            weights.write_bytes(weights.read_bytes()[:100])
            raise KeyboardInterrupt("power cut")
        original(path)

    monkeypatch.setattr(checkpoints, "fsync_tree", crash_on_third_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(_config(*overrides), run_dir)
    monkeypatch.undo()
    assert [p.name for p in checkpoints.checkpoint_dirs(run_dir)] == ["step_2", "step_4"]
    assert (run_dir / "checkpoints" / ".tmp-step_6").is_dir()
    summary = train(_config(*overrides, "trainer.resume=auto"), run_dir)
    assert summary["steps"] == 8
    assert not (run_dir / "checkpoints" / ".tmp-step_6").exists()
    rows = _metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 9))  # resumed from step 4: steps 5, 6 logged once


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, model_cache, caplog):
    run_dir = tmp_path / "run"
    overrides = ["objective=dpo", "trainer.max_steps=4", "trainer.checkpoint_every=2"]
    train(_config(*overrides), run_dir)
    newest = run_dir / "checkpoints" / "step_4"
    weights = next(newest.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="prefopt"):
        summary = train(_config(*overrides, "trainer.max_steps=6", "trainer.resume=auto"), run_dir)
    assert f"checkpoint {newest} does not load" in caplog.text
    assert summary["steps"] == 6
    assert [r["step"] for r in _metrics(run_dir)] == [1, 2, 3, 4, 5, 6]  # from step 2: 3 and 4 again, once


def test_sigterm_writes_a_checkpoint_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PREFOPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "prefopt.train", *FAST, "objective=ipa", "trainer.max_steps=400",
            f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("prefopt: preempted: stopped by SIGTERM at step ") and "trainer.resume=auto" in last
    saved = checkpoints.checkpoint_dirs(run_dir)
    assert len(saved) == 1
    stopped_at = int(saved[0].name.split("_")[1])
    assert 3 <= stopped_at < 400
    resume = [*base[:-2], "trainer.max_steps=" + str(stopped_at + 3), "trainer.resume=auto", base[-1]]
    result = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    steps = [r["step"] for r in _metrics(run_dir)]
    assert steps == list(range(1, stopped_at + 4))


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGKILL gives no chance to save: resume starts from the last periodic checkpoint and replays
    the data order and RNG from there; the final LoRA equals an uninterrupted run's (atol 1e-6)."""
    from safetensors.torch import load_file

    env = {**os.environ, "PREFOPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "prefopt.train", *FAST, "objective=dpo", "trainer.max_steps=40",
            "trainer.checkpoint_every=4", "trainer.learning_rate=1e-3"]
    straight = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'straight'}"], capture_output=True, text=True,
                              env=env, timeout=300)
    assert straight.returncode == 0, straight.stderr
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([*base, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not any(int(p.name.split("_")[1]) >= 8 for p in checkpoints.checkpoint_dirs(run_dir)):
        time.sleep(0.05)
    process.kill()  # SIGKILL, mid-step
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = max(int(p.name.split("_")[1]) for p in checkpoints.checkpoint_dirs(run_dir))
    assert 8 <= killed_at < 40 and not (run_dir / "final").exists()
    resumed = subprocess.run([*base, "trainer.resume=auto", f"hydra.run.dir={run_dir}"], capture_output=True,
                             text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["step"] for r in _metrics(run_dir)] == list(range(1, 41))
    a = load_file(tmp_path / "straight" / "final" / "pytorch_lora_weights.safetensors")
    b = load_file(run_dir / "final" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)
    assert max(float(a[k].abs().max()) for k in a if ".lora.up." in k or "lora_B" in k) > 1e-3  # it trained
