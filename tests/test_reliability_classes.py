"""Reliability by class (docs/reliability.md): a user's mistake in a config value, a file or the
environment is one line and exit status 2 with nothing written or removed; resume refuses a changed
run and a second process on a run dir; a full disk (a real tmpfs that fills up) ends a run in one
line, loses nothing, leaves no half-written file, and the next start after space is freed resumes;
a run whose every step was skipped ends with the guard's line. A bug keeps its traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_reliability import FAST, _config, _metrics, _snapshot

import prefopt.training.loop as loop_module
from prefopt.checkpoints import checkpoint_dirs, close_run, holds_output, open_run, truncate_metrics
from prefopt.cli import CONF_DIR, check_overrides, one_line_errors
from prefopt.errors import ConfigError, StorageError, TrainingError
from prefopt.paths import ASSETS
from prefopt.training import train

ROOT = Path(__file__).resolve().parent.parent
RUN_OUTPUTS = ("metrics.jsonl", "checkpoints", "final", "eval", "summary.json")


def _steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in _metrics(run_dir)]


def _run(*args, env=None, timeout=300):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def _one_line(result) -> str:
    """The command's error: exit status 2, one ``prefopt:`` line on stderr, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("prefopt:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size, options)``: a fresh tmpfs of ``size`` at ``tmp_path/name``, unmounted after
    the test; the test is skipped where mounting is not permitted."""
    mounted = []

    def mount(name: str, size: str, options: str = "") -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{',' + options if options else ''}",
                                 "tmpfs", str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _resize(point: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


def _used(point: Path) -> int:
    stats = os.statvfs(point)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def _leftovers(root: Path) -> list[str]:
    """Temporary files or folders of an interrupted write anywhere under ``root``."""
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


# ---- a user's mistake: one line, exit status 2, nothing written or removed --------------------------

@pytest.fixture
def truncated_model(tmp_path):
    """The shipped base model's folder with its weights file cut in half."""
    folder = tmp_path / "base_model"
    shutil.copytree(ASSETS / "synth_base", folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


MISTAKES = {  # a class of mistake -> (overrides, environment, what the line names)
    "weights file truncated": (["model=base", "model.path={model}"], {}, "model.path: {model} does not load"),
    "image size vs the model's downsampling": (["data.image_size=10"], {}, "data.image_size=10 does not fit model=tiny"),
    "frames for an image model": (["data.num_frames=4"], {}, "data.num_frames=4: model=tiny (UNet2DModel) is an "
                                                             "image model"),
    "images for a video model": (["model=tiny_video"], {}, "data.num_frames=null: model=tiny_video (MotionVideoModel) "
                                                           "is a video model and data=renders gives images"),
    "fp16 on the CPU": (["trainer.mixed_precision=fp16"], {}, "trainer.mixed_precision=fp16 needs a GPU"),
    "an unknown LR schedule": (["trainer.lr_scheduler=cosin"], {}, "trainer.lr_scheduler must be one of"),
    "channels vs the data": (["model.config.in_channels=4", "model.config.out_channels=4"], {},
                             "model.config: model=tiny reads 4 channels but data=renders gives RGB pixels"),
    "a non-finite objective value": (["objective.beta=inf"], {}, "objective.beta must be > 0 and finite, got inf"),
    "a non-finite trainer value": (["trainer.logit_mean=nan"], {}, "trainer.logit_mean must be a finite number"),
    "a seed numpy refuses": (["seed=-1"], {}, "seed must be a whole number in [0, 4294967295], got -1"),
    "PREFOPT_CACHE is a file": ([], {"PREFOPT_CACHE": "{file}"}, "PREFOPT_CACHE={file}: {file} is a file, not a folder"),
    "wandb online without a key": (["logger=wandb", "logger.mode=online"],
                                   {"HOME": "{home}", "WANDB_API_KEY": "", "WANDB_ERROR_REPORTING": "false"},
                                   "logger: wandb refused to start (No API key configured"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_one_line_exit_2_and_writes_nothing(tmp_path, model_cache, truncated_model, case):
    overrides, env, expected = MISTAKES[case]
    names = {"model": truncated_model, "file": tmp_path / "a_file", "home": tmp_path}
    names["file"].write_text("not a folder")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("the user's notes")
    before = _snapshot(run_dir, truncated_model)
    result = _run("prefopt.train", *FAST, *[o.format(**names) for o in overrides], f"hydra.run.dir={run_dir}",
                  env={"PREFOPT_CACHE": str(model_cache), **{k: v.format(**names) for k, v in env.items()}})
    assert expected.format(**names) in _one_line(result)
    written = {k: v for k, v in _snapshot(run_dir, truncated_model).items()  # Hydra's own records of the job apart
               if "/.hydra/" not in k and not k.endswith(".log") and Path(k).stat().st_size}
    assert written == before
    assert not any(holds_output(run_dir / name) for name in RUN_OUTPUTS)  # the next start here is not refused


def test_a_run_dir_that_cannot_be_written_is_one_line(tmp_path, model_cache, tmpfs):
    read_only = tmpfs("read_only", "1m", "ro")
    result = _run("prefopt.train", *FAST, f"hydra.run.dir={read_only / 'run'}", env={"PREFOPT_CACHE": str(model_cache)})
    assert f"hydra.run.dir: {read_only} cannot be written" in _one_line(result)


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the user's errors become one line (the filesystem's refusal, the host's memory, the
    logger's refusal): a TypeError in a check, or an OSError or RuntimeError of another kind, is raised
    as it is."""
    import prefopt.models.builders as builders

    def broken(model, data):
        raise TypeError("a bug in a check")

    monkeypatch.setattr(builders, "check_fits", broken)
    with pytest.raises(Exception, match="a bug in a check"):
        check_overrides(CONF_DIR, FAST)
    for bug in (FileNotFoundError(errno.ENOENT, "No such file or directory", "/internal/path"),
                RuntimeError("shapes do not match")):
        with pytest.raises(type(bug)):
            with one_line_errors():
                raise bug
    for users in (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x")), MemoryError(),
                  RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 640000000000 bytes")):
        with pytest.raises(SystemExit) as exit_status:
            with one_line_errors():
                raise users
        assert exit_status.value.code == 2


# ---- resume refuses a changed run; two processes on one run dir ---------------------------------------

def test_resume_refuses_changed_settings_and_accepts_the_keys_that_may_change(tmp_path, model_cache):
    run_dir = tmp_path / "run"
    train(_config("objective=dpo", "trainer.checkpoint_every=2"), run_dir)
    saved = json.loads((run_dir / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert saved["config"]["objective.name"] == "dpo" and saved["config"]["objective.beta"] == 500.0
    before = _snapshot(run_dir)
    for overrides, listed in ((["objective=ipa"], ["objective.name 'dpo' -> 'ipa'", "objective.beta 500.0 -> 600.0"]),
                              (["objective=dpo", "trainer.learning_rate=0.001"], ["trainer.learning_rate 0.0001 -> 0.001"])):
        with pytest.raises(ConfigError) as error:
            train(_config(*overrides, "trainer.checkpoint_every=2", "trainer.resume=auto"), run_dir)
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"trainer.resume=auto: {run_dir} holds a run with other settings")
        assert all(item in message for item in listed), message
        assert "trainer.max_steps" in message and "trainer.overwrite=true" in message  # what may change, the way out
        assert _snapshot(run_dir) == before
    # longer, logged less often, checkpointed more often, compiled: the same run, extended
    summary = train(_config("objective=dpo", "trainer.max_steps=6", "trainer.log_every=2", "trainer.checkpoint_every=3",
                            "trainer.keep_checkpoints=3", "trainer.resume=auto"), run_dir)
    assert summary["steps"] == 6 and _steps(run_dir) == [1, 2, 3, 4, 6]


def test_a_second_process_on_a_run_dir_refuses(tmp_path, model_cache):
    """The first holds the run dir's lock (as a run does); a second command line, and a second run in
    this process, refuse in one line before Hydra or the run writes anything there."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from prefopt.checkpoints import open_run; "
                               f"open_run(Path({str(run_dir)!r}), lock=True); print('held', flush=True); "
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        (run_dir / "notes.txt").write_text("the first run's files")
        before = _snapshot(run_dir)
        result = _run("prefopt.train", *FAST, f"hydra.run.dir={run_dir}", env={"PREFOPT_CACHE": str(model_cache)})
        assert f"hydra.run.dir: another prefopt process is running in {run_dir}" in _one_line(result)
        with pytest.raises(ConfigError, match="another prefopt process is running in"):
            train(_config(), run_dir)
        assert _snapshot(run_dir) == before and sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    finally:
        holder.kill()
        holder.wait()
    summary = train(_config(), run_dir)  # its lock went with it
    assert summary["steps"] == 4


def _in_use_elsewhere(run_dir: Path) -> bool:
    """Whether another process finds ``run_dir`` locked (flock on the folder, as the lock is taken)."""
    script = (f"import fcntl, os; d = os.open({str(run_dir)!r}, os.O_RDONLY)\n"
              "try: fcntl.flock(d, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
              "except BlockingIOError: print('locked')")
    probe = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return probe.stdout.strip() == "locked"


def test_a_lock_is_held_until_the_run_closes_and_passes_between_runs_of_a_process(tmp_path):
    run_dir = tmp_path / "run"
    open_run(run_dir, lock=True)
    open_run(run_dir, lock=True)  # this process's next run (the last one raised): the lock passes
    assert _in_use_elsewhere(run_dir)
    close_run(run_dir)
    assert not _in_use_elsewhere(run_dir)


# ---- a full disk: one line, nothing lost, no half-written file, the next start resumes ------------------

def test_a_full_disk_while_a_checkpoint_is_written(tmp_path, model_cache, tmpfs):
    """The run dir on a real tmpfs: a first run writes checkpoints 2 and 4; the disk is then shrunk
    to what it holds plus less than a checkpoint; the resumed run writes step 6's checkpoint into it."""
    disk = tmpfs("disk", "64m")
    run_dir = disk / "run"
    overrides = ["objective=dpo", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=3"]
    train(_config(*overrides), run_dir)
    checkpoint = sum(p.stat().st_size for p in (run_dir / "checkpoints" / "step_4").rglob("*") if p.is_file())
    _resize(disk, _used(disk) + checkpoint // 4)
    kept = _snapshot(run_dir / "checkpoints", run_dir / "final")
    with pytest.raises(StorageError) as error:
        train(_config(*overrides, "trainer.max_steps=8", "trainer.resume=auto"), run_dir)
    message = str(error.value)
    assert "\n" not in message and f"checkpoint {run_dir / 'checkpoints' / 'step_6'} could not be written" in message
    assert f"the last one, {run_dir / 'checkpoints' / 'step_4'}, is intact" in message
    assert "No space left on device" in message and "trainer.resume=auto" in message
    assert _snapshot(run_dir / "checkpoints", run_dir / "final") == kept  # every earlier file intact
    assert _leftovers(disk) == [] and [p.name for p in checkpoint_dirs(run_dir)] == ["step_2", "step_4"]
    _resize(disk, 64 << 20)  # space freed
    summary = train(_config(*overrides, "trainer.max_steps=8", "trainer.resume=auto"), run_dir)
    assert summary["steps"] == 8 and _steps(run_dir) == list(range(1, 9))
    assert _leftovers(disk) == []


def test_a_full_disk_while_a_cache_entry_is_written(tmp_path, tmpfs):
    """PREFOPT_CACHE on a tmpfs too small for the model folder the run materializes there."""
    cache = tmpfs("cache", "256k")
    run_dir = tmp_path / "run"
    result = _run("prefopt.train", *FAST, f"hydra.run.dir={run_dir}", env={"PREFOPT_CACHE": str(cache)})
    line = _one_line(result)
    assert f"{cache / 'models'}" in line and "No space left on device" in line and "free space" in line
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no half-written file
    assert not any((run_dir / name).exists() for name in RUN_OUTPUTS)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from prefopt.models import tiny_pipelines

    return tiny_pipelines.build("sd15", tmp_path_factory.mktemp("pipeline") / "sd15")


def test_a_full_disk_while_samples_are_written(tmp_path, tmpfs, pipeline):
    """prefopt.generate into a tmpfs filled up by another file: the samples written are whole, none is
    half-written; once that file is gone, the rerun makes the rest."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a hand with {i} fingers\n" for i in range(6)))
    disk = tmpfs("out", "1m")
    out = disk / "pool"
    (disk / "ballast").write_bytes(b"\0" * ((1 << 20) - (32 << 10)))  # leaves 32 KiB: room for a few samples
    command = ["prefopt.generate", "model=sd15", f"model.path={pipeline}", f"data.prompts={prompts}", f"out={out}",
               "data.samples_per_prompt=2", "batch_size=4", "steps=2", "height=32", "width=32"]
    line = _one_line(_run(*command))
    assert "No space left on device" in line and str(out) in line
    written = list((out / "samples").glob("*.png"))
    assert 0 < len(written) < 12 and _leftovers(disk) == [] and not (out / "samples.jsonl").exists()
    for path in written:
        with Image.open(path) as image:
            image.load()  # whole
    (disk / "ballast").unlink()
    result = _run(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((out / "samples").glob("*.png"))) == 12 and len((out / "samples.jsonl").read_text().splitlines()) == 12


def test_a_line_cut_short_is_dropped_when_a_run_resumes(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    truncate_metrics(metrics, 2)
    assert metrics.read_text() == '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n'


# ---- a run whose every step was skipped ----------------------------------------------------------------

def test_a_run_whose_every_step_was_skipped_ends_with_the_guards_line(tmp_path, model_cache, monkeypatch):
    original = loop_module.batch_loss

    def nan_loss(*args, **kwargs):
        loss, metrics = original(*args, **kwargs)
        return loss * float("nan"), metrics

    monkeypatch.setattr(loop_module, "batch_loss", nan_loss)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as error:
        train(_config("objective=dpo", "trainer.max_nonfinite_steps=10"), run_dir)
    message = str(error.value)
    assert "\n" not in message and message.startswith("every one of the 4 steps had a non-finite loss or gradient")
    assert "objective.beta" in message and not (run_dir / "final").exists() and not (run_dir / "summary.json").exists()
