"""``python -m prefopt.score manifest=<samples.jsonl> reward=<option>``: add a reward's scores to a
sample manifest, in place.

Each row gets ``score`` (in [0, 1]), ``reward`` (the reward's target and a hash of its settings)
and, for a multi-dimensional reward, ``scores`` (every dimension). Rows that already carry a score
of the same reward are skipped, so a rerun after a crash scores only the rest; a score of another
reward is refused unless ``overwrite=true``. The manifest is rewritten atomically every
``save_every`` rows. Samples are read at their own size, batched while their shapes agree.
"""

from __future__ import annotations

from pathlib import Path

from prefopt.cli import command
from prefopt.errors import ConfigError


def load_sample(path: Path):
    """A file as (3, H, W) or (3, T, H, W) float32 in [-1, 1]."""
    import numpy as np
    import torch

    from prefopt.data.media import is_video, read_frames

    frames = np.stack(read_frames(path))  # (T, H, W, 3)
    tensor = torch.from_numpy(frames).float() / 127.5 - 1
    return tensor.permute(3, 0, 1, 2) if is_video(path) else tensor[0].permute(2, 0, 1)


def _next_batch(manifest: Path, rows: list[dict]) -> tuple[list[dict], list]:
    """The leading rows of ``rows`` whose samples share one shape, and their samples."""
    from prefopt.data.manifest import media_path

    batch, samples = [], []
    for row in rows:
        path = media_path(manifest, row)
        try:
            sample = load_sample(path)
        except ValueError as error:
            raise ConfigError(f"{manifest}:{row['_line']}: {path}: {error}") from None
        if samples and sample.shape != samples[0].shape:
            break
        batch.append(row)
        samples.append(sample)
    return batch, samples


def _dimensions(values, count: int, where: str) -> dict:
    """A reward's output as checked ``{dimension: (B,)}`` with a ``score``."""
    from prefopt.rewards import callables

    if not isinstance(values, dict):
        return {"score": callables.check(values, count, where)}
    if "score" not in values:
        raise ConfigError(f"{where}: returned dimensions {sorted(values)} but no 'score' "
                          "(aggregate them: prefopt.rewards.callables.Weighted)")
    return {key: callables.check(value, count, f"{where}, {key}") for key, value in values.items()}


def score(cfg) -> dict:
    """Score the manifest's unscored rows; returns the counts (scored now, skipped, rows)."""
    import torch
    from tqdm import tqdm

    from prefopt.data.manifest import read_rows, write_rows
    from prefopt.rewards import callables

    manifest = Path(cfg.manifest).expanduser()
    rows = read_rows(manifest)
    reward, reward_name = callables.load(cfg.reward), callables.name(cfg.reward)
    if not cfg.overwrite:
        other = next((row for row in rows if "score" in row and row.get("reward") != reward_name), None)
        if other is not None:
            raise ConfigError(f"{manifest}:{other['_line']}: scored by {other.get('reward')}, not {reward_name}; "
                              "overwrite=true re-scores every row")
    todo = [row for row in rows if cfg.overwrite or "score" not in row]
    since_save, done = 0, 0
    progress = tqdm(total=len(todo), desc="score")
    while done < len(todo):
        batch, samples = _next_batch(manifest, todo[done:done + cfg.batch_size])
        values = reward(torch.stack(samples), [str(row.get("prompt", "")) for row in batch])
        dims = _dimensions(values, len(batch), f"reward ({reward_name}) on {manifest}:{batch[0]['_line']}-{batch[-1]['_line']}")
        for index, row in enumerate(batch):
            row["score"] = float(dims["score"][index])
            row["reward"] = reward_name
            if len(dims) > 1:
                row["scores"] = {key: float(value[index]) for key, value in dims.items() if key != "score"}
        done += len(batch)
        since_save += len(batch)
        progress.update(len(batch))
        if since_save >= cfg.save_every:
            write_rows(manifest, rows)
            since_save = 0
    progress.close()
    write_rows(manifest, rows)
    counts = {"rows": len(rows), "scored": len(todo), "skipped": len(rows) - len(todo)}
    print(f"score: {counts['scored']} scored, {counts['skipped']} already scored, in {manifest}")
    return counts


main = command("score", score)

if __name__ == "__main__":
    main()
