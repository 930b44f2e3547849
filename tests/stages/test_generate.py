"""``python -m prefopt.generate`` on a tiny random-init SD pipeline saved to disk: files, manifest,
fixed seeds, and a run killed midway that a rerun completes with exactly the missing files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prefopt.models import tiny_pipelines

ROOT = Path(__file__).resolve().parents[2]
PROMPTS, PER_PROMPT, BATCH = 8, 3, 2


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    return tiny_pipelines.build("sd15", tmp_path_factory.mktemp("pipeline") / "sd15")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("".join(f"a hand with {i} fingers\n" for i in range(PROMPTS)))
    return path


def _command(sd15, prompts, out, *extra):
    return [sys.executable, "-m", "prefopt.generate", "model=sd15", f"model.path={sd15}", f"data.prompts={prompts}",
            f"out={out}", f"data.samples_per_prompt={PER_PROMPT}", f"batch_size={BATCH}", "steps=3", "height=32",
            "width=32", "data.seed=7", *extra]


def _run(command):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _finished(out: Path) -> list[Path]:
    return [p for p in (out / "samples").glob("*.png") if not p.name.startswith(".")]


def _expected_names():
    return {f"{i:06d}_{j:03d}.png" for i in range(PROMPTS) for j in range(PER_PROMPT)}


@pytest.fixture(scope="module")
def uninterrupted(sd15, prompts, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _run(_command(sd15, prompts, out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_generate_writes_every_sample_and_a_manifest_with_fixed_seeds(uninterrupted):
    files = {p.name for p in (uninterrupted / "samples").iterdir()}
    assert files == _expected_names()
    rows = [json.loads(line) for line in (uninterrupted / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == PROMPTS * PER_PROMPT
    for k, row in enumerate(rows):
        i, j = divmod(k, PER_PROMPT)
        assert row == {"path": f"samples/{i:06d}_{j:03d}.png", "prompt": f"a hand with {i} fingers",
                       "prompt_index": i, "sample": j, "seed": 7 + k}
    with Image.open(uninterrupted / rows[0]["path"]) as image:
        assert image.size == (32, 32)
    first, second = (np.asarray(Image.open(uninterrupted / rows[k]["path"])) for k in (0, 1))
    assert not np.array_equal(first, second)  # each sample its own seed


def test_generation_killed_midway_is_completed_by_a_rerun_with_exactly_the_missing_files(
        sd15, prompts, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(_command(sd15, prompts, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if len(_finished(out)) >= 6:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "samples.jsonl").exists()  # written only when every sample is
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in _finished(out)}  # not a killed temporary file
    assert 6 <= len(before) < PROMPTS * PER_PROMPT

    result = _run(_command(sd15, prompts, out))
    assert result.returncode == 0, result.stderr[-2000:]
    missing = PROMPTS * PER_PROMPT - len(before)
    assert f"generate: {missing} new of {PROMPTS * PER_PROMPT} samples" in result.stdout
    names = [p.name for p in (out / "samples").iterdir()]
    assert sorted(names) == sorted(_expected_names())  # no duplicates, no leftover temporary files
    for name, stamp in before.items():  # what existed was not written again
        path = out / "samples" / name
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    for name in names:  # the same pixels as the uninterrupted run
        assert np.array_equal(np.asarray(Image.open(out / "samples" / name)),
                              np.asarray(Image.open(uninterrupted / "samples" / name))), name
    assert (out / "samples.jsonl").read_text() == (uninterrupted / "samples.jsonl").read_text()

    again = _run(_command(sd15, prompts, out))  # complete: nothing to do
    assert f"generate: 0 new of {PROMPTS * PER_PROMPT} samples" in again.stdout


def test_a_rerun_with_other_settings_is_refused_in_one_line(sd15, prompts, uninterrupted):
    result = _run(_command(sd15, prompts, uninterrupted, "steps=4"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"prefopt: error: out={uninterrupted} holds samples made with other settings (steps: 3 != 4); "
        "use another out folder")


def test_two_processes_share_the_samples_and_write_what_one_process_writes(sd15, prompts, uninterrupted, tmp_path):
    import shutil
    import socket

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        port = handle.getsockname()[1]
    out = tmp_path / "two"
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
              "no", "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "prefopt.generate"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    result = subprocess.run([*launch, *_command(sd15, prompts, out)[3:]], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("generate: ") == 1  # one manifest, written by rank 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(_expected_names())
    for name in _expected_names():
        assert np.array_equal(np.asarray(Image.open(out / "samples" / name)),
                              np.asarray(Image.open(uninterrupted / "samples" / name))), name
    assert (out / "samples.jsonl").read_text() == (uninterrupted / "samples.jsonl").read_text()
