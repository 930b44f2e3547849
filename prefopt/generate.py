"""``python -m prefopt.generate model=<family> model.path=<pipeline folder> data.prompts=<file> out=<folder>``

Batched sampling with the model's own diffusers pipeline. Sample ``j`` of prompt ``i`` is drawn
with its own generator seeded ``data.seed + i * samples_per_prompt + j`` and written to
``out/samples/<i>_<j>.png`` (video pipelines: ``.mp4`` at ``fps``); ``out/samples.jsonl`` lists
every sample (path, prompt, prompt_index, sample, seed) in that order.

Resumable: a rerun makes only the samples whose file is missing. Samples are drawn in fixed
batches of ``batch_size`` consecutive samples (a batch with a missing file is run again and only its
missing files written), so a resumed run writes the same files as an uninterrupted one. Files are
written to a temporary name and renamed, so a killed run leaves whole files only; ``out/generate.json``
records the settings, and a rerun with other settings is refused instead of mixing two models'
samples. Shardable: under ``accelerate launch`` process k runs every N-th unfinished batch; the
manifest is written once all are done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefopt.cli import command
from prefopt.errors import ConfigError
from prefopt.io import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Job:
    prompt_index: int
    sample: int
    seed: int
    path: str  # relative to ``out``


def read_prompts(path: Path, conditions: list[str]) -> list[dict]:
    """Rows ``{"prompt": str, <condition>: value}``; image/video paths in conditions are loaded."""
    from prefopt.data.manifest import read_rows

    path = Path(path).expanduser()
    if path.suffix != ".jsonl":
        if not path.is_file():
            raise ConfigError(f"data.prompts: {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is not a prompt
        except UnicodeDecodeError as error:
            raise ConfigError(f"data.prompts: {path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
        rows = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    else:
        rows = read_rows(path, "data.prompts")
    if not rows:
        raise ConfigError(f"data.prompts: {path}: no prompts")
    for number, row in enumerate(rows, start=1):
        where = f"{path}:{row.get('_line', number)}"
        if not isinstance(row.get("prompt"), str):
            raise ConfigError(f"{where}: no 'prompt' string")
        row["_source"] = {}
        for key in conditions:
            if key not in row:
                raise ConfigError(f"{where}: no {key!r} (data.conditions)")
            row["_source"][key] = row[key]
            row[key] = _condition(row[key], path.parent, f"{where}: {key}")
    return rows


def _condition(value, folder: Path, where: str):
    """A condition's value; an image or video path is loaded (a PIL image, or a list of frames)."""
    from prefopt.data.media import VIDEO_SUFFIXES, read_frames

    if not (isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)):
        return value
    file = folder / value
    if not file.is_file():
        raise ConfigError(f"{where} {file}: no such file")
    from PIL import Image

    try:
        frames = [Image.fromarray(frame) for frame in read_frames(file)]
    except ValueError as error:
        raise ConfigError(f"{where} {file}: {error}") from None
    return frames if value.lower().endswith(VIDEO_SUFFIXES) else frames[0]


def plan(num_prompts: int, per_prompt: int, seed: int, suffix: str) -> list[Job]:
    return [Job(i, j, seed + i * per_prompt + j, f"samples/{i:06d}_{j:03d}{suffix}")
            for i in range(num_prompts) for j in range(per_prompt)]


def settings(cfg, prompts_file: Path) -> dict:
    """What makes a sample: a rerun with any of these changed would mix two kinds of samples."""
    import hashlib

    keep = ("pipeline", "adapter", "steps", "guidance_scale", "height", "width", "num_frames", "fps", "dtype")
    return {"model.path": str(Path(cfg.model.path).resolve()), "model.family": cfg.model.family,
            "data.prompts_sha256": hashlib.sha256(prompts_file.read_bytes()).hexdigest(),
            "data.samples_per_prompt": cfg.data.samples_per_prompt, "data.seed": cfg.data.seed,
            "data.conditions": list(cfg.data.conditions), "pipeline_kwargs": dict(cfg.pipeline_kwargs),
            **{k: getattr(cfg, k) for k in keep}}


def check_settings(out: Path, wanted: dict, record_them: bool) -> None:
    """Refuse ``out`` if it holds samples of other settings (every process checks, so all stop);
    ``record_them``: write them for a new ``out`` (the main process)."""
    from prefopt.io import write_json

    record = out / "generate.json"
    if record.is_file():
        had = json.loads(record.read_text())
        changed = [k for k in sorted(set(had) | set(wanted)) if had.get(k) != wanted.get(k)]
        if changed:
            key = changed[0]
            raise ConfigError(f"out={out} holds samples made with other settings ({key}: {had.get(key)!r} != "
                              f"{wanted.get(key)!r}); use another out folder")
    elif record_them:
        write_json(record, wanted)


def load_pipeline(cfg, fam, device):
    import diffusers
    import torch

    from prefopt.models.builders import load_pretrained
    from prefopt.models.families import pipeline_class

    cls = pipeline_class(Path(cfg.model.path)) if cfg.pipeline is None else getattr(diffusers, cfg.pipeline, None)
    if cls is None:
        raise ConfigError(f"pipeline: diffusers has no pipeline class {cfg.pipeline!r}")
    dtype, path = getattr(torch, cfg.dtype), Path(cfg.model.path).expanduser()
    pipe = load_pretrained(lambda: cls.from_pretrained(str(path), torch_dtype=dtype, **dict(fam.load_kwargs)), path)
    if cfg.adapter:
        adapter = Path(cfg.adapter).expanduser()
        load_pretrained(lambda: pipe.load_lora_weights(str(adapter)), adapter, "adapter")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def write_sample(array, path: Path, fps: int) -> None:
    """``array``: (H, W, 3) or (T, H, W, 3) floats in [0, 1]; written whole (temporary name, then renamed)."""
    import numpy as np

    pixels = (np.clip(np.asarray(array, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)

    def write(tmp: Path) -> None:
        if pixels.ndim == 4:
            import cv2

            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, pixels.shape[2:0:-1])
            for frame in pixels:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            _check_video(tmp, len(pixels))
        else:
            from PIL import Image

            Image.fromarray(pixels).save(tmp, format="PNG")

    atomic_write(path, write)


def _check_video(path: Path, frames: int) -> None:
    """OpenCV's writer reports no failure: read back how many frames it wrote (a full disk then
    becomes the filesystem's error, prefopt/io.py)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    written = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    if written != frames:
        raise RuntimeError(f"{path}: the video writer wrote {written} of {frames} frames")


def sample_batch(pipe, cfg, video: bool, jobs: list[Job], rows: list[dict], device):
    """The pipeline's output for ``jobs``: (B, H, W, 3) or (B, T, H, W, 3) in [0, 1]."""
    import torch

    kwargs = {"prompt": [rows[job.prompt_index]["prompt"] for job in jobs],
              "generator": [torch.Generator(device).manual_seed(job.seed) for job in jobs],
              "num_inference_steps": cfg.steps, "output_type": "np", **dict(cfg.pipeline_kwargs)}
    for key in cfg.data.conditions:
        kwargs[key] = [rows[job.prompt_index][key] for job in jobs]
    for key in ("guidance_scale", "height", "width", "num_frames"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    output = pipe(**kwargs)
    return output.frames if video else output.images


def generate(cfg) -> Path:
    """Make every missing sample of ``cfg`` and write the manifest; returns its path."""
    from tqdm import tqdm

    from prefopt.data.manifest import write_rows
    from prefopt.launch import partial_state
    from prefopt.models.families import family

    state = partial_state()
    out = Path(cfg.out).expanduser()
    prompts_file = Path(cfg.data.prompts).expanduser()
    rows = read_prompts(prompts_file, list(cfg.data.conditions))
    fam = family(cfg.model.family)
    if fam is None or not cfg.model.path:
        raise ConfigError("model.path: prefopt.generate samples a diffusers pipeline folder "
                          "(model=sd15|sdxl|animatediff|wan model.path=<folder>)")
    jobs = plan(len(rows), cfg.data.samples_per_prompt, cfg.data.seed, ".mp4" if fam.video else ".png")
    check_settings(out, settings(cfg, prompts_file), record_them=state.is_main_process)
    pipe = load_pipeline(cfg, fam, state.device)
    # fixed batches: a sample is computed in the same batch whether or not the run was interrupted;
    # every process sees the same missing files (none is written before the barrier)
    batches = [jobs[i:i + cfg.batch_size] for i in range(0, len(jobs), cfg.batch_size)]
    missing = [job for job in jobs if not (out / job.path).is_file()]
    todo = [batch for batch in batches if any(not (out / job.path).is_file() for job in batch)]
    if state.is_main_process:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        for stale in (out / "samples").glob(".*.tmp*"):  # a killed run's unfinished file
            stale.unlink()
    state.wait_for_everyone()
    for batch in tqdm(todo[state.process_index::state.num_processes], desc="generate",
                      disable=not state.is_main_process):
        for job, array in zip(batch, sample_batch(pipe, cfg, fam.video, batch, rows, state.device), strict=True):
            if not (out / job.path).is_file():
                write_sample(array, out / job.path, cfg.fps)
    state.wait_for_everyone()
    manifest = out / "samples.jsonl"
    if state.is_main_process:
        lost = [job.path for job in jobs if not (out / job.path).is_file()]
        if lost:
            raise RuntimeError(f"{len(lost)} samples were not written (first: {out / lost[0]}); rerun to make them")
        write_rows(manifest, [{"path": job.path, "prompt": rows[job.prompt_index]["prompt"],
                               "prompt_index": job.prompt_index, "sample": job.sample, "seed": job.seed,
                               **rows[job.prompt_index]["_source"]} for job in jobs])
        print(f"generate: {len(missing)} new of {len(jobs)} samples; manifest {manifest}")
    return manifest


main = command("generate", generate)

if __name__ == "__main__":
    main()
