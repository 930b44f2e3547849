"""``python -m prefopt.curate manifest=<scored samples.jsonl> method=<ipa|sft|dpo|gapo|hgdpo>``

Writes, in ``out`` (default: ``<manifest folder>/<method>``), the manifest ``prefopt.train
data=files data.path=...`` reads (prefopt/data/files.py) and ``counts.json`` (what was kept and
dropped, also printed). The selection rules are in prefopt/data/curation.py.

    ipa, sft    train.jsonl: {"winner", "prompt", "reward_w"}, the top samples
    dpo, gapo   train.jsonl: {"winner", "loser", "reward_w", "reward_l", "prompt"}, ties dropped
    hgdpo       easy.jsonl (pool best vs worst), hard.jsonl (real image vs the prompt's worst sample)
                and, given ``recon``, normal.jsonl (reconstruction vs worst): train with
                data.stages={easy: .../easy.jsonl, normal: .../normal.jsonl, hard: .../hard.jsonl}

HG-DPO's real images come as JSONL rows ``{"image": path, "prompt": ...}``; row i belongs to
prompt i of the pool, so the pool is generated from the same file (``data.prompts=<real.jsonl>``).
Each real image is centre-cropped and resized to the pool's size into ``out/real/`` (the originals
are not touched); ``out/real.jsonl`` then lists them for the intermediate domain:

    python -m prefopt.generate ... data.prompts=<out>/real.jsonl data.conditions=[image] \\
        pipeline=StableDiffusionImg2ImgPipeline +pipeline_kwargs.strength=0.5 out=<recon folder>
"""

from __future__ import annotations

from pathlib import Path

from prefopt.cli import command
from prefopt.errors import ConfigError
from prefopt.io import atomic_write


def _path(row: dict, source: Path, out: Path) -> str:
    """A row's sample of manifest ``source``, as a manifest in ``out`` names it."""
    from prefopt.data.manifest import media_path, relative

    return relative(media_path(source, row), out)


def _pair_row(winner: dict, loser: dict, source: Path, out: Path, rewards: bool = True) -> dict:
    row = {"winner": _path(winner, source, out), "loser": _path(loser, source, out), "prompt": winner.get("prompt", "")}
    if rewards:
        row.update(reward_w=winner["score"], reward_l=loser["score"])
    return row


def _fit(path: Path, size: tuple[int, int], target: Path) -> None:
    """``path`` centre-cropped to ``size``'s aspect and resized to it, written to ``target`` (once)."""
    from PIL import Image, ImageOps

    if target.is_file():
        return
    with Image.open(path) as image:
        fitted = ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)
    atomic_write(target, lambda tmp: fitted.save(tmp, format="PNG"))


def hgdpo_sets(cfg, rows: list[dict], manifest: Path, out: Path) -> dict:
    from PIL import Image

    from prefopt.data import curation
    from prefopt.data.manifest import media_path, read_rows, write_rows

    if not cfg.real:
        raise ConfigError("real: method=hgdpo needs a JSONL of real images, {\"image\": path, \"prompt\": ...}")
    real_file = Path(cfg.real).expanduser()
    real = read_rows(real_file, "real")
    easy, counts = curation.pairs(rows, "best_worst", cfg.min_gap)
    losers = curation.worst(rows)
    sets = {"easy": [_pair_row(w, loser, manifest, out, rewards=False) for w, loser in easy]}
    (out / "real").mkdir(parents=True, exist_ok=True)
    fitted, hard = [], []
    for index, row in enumerate(real):
        loser = losers.get(index)
        if loser is None:
            raise ConfigError(f"{real_file}:{row['_line']}: the pool has no scored sample of prompt {index}")
        if loser.get("prompt", "") != row.get("prompt", ""):
            raise ConfigError(f"{real_file}:{row['_line']}: prompt {row.get('prompt')!r} but the pool's prompt "
                              f"{index} is {loser.get('prompt')!r} (generate the pool with data.prompts={real_file})")
        with Image.open(media_path(manifest, loser)) as image:
            size = image.size
        target = out / "real" / f"{index:06d}.png"
        _fit(media_path(real_file, row, "image"), size, target)
        fitted.append({"image": f"real/{target.name}", "prompt": row.get("prompt", "")})
        hard.append({"winner": f"real/{target.name}", "loser": _path(loser, manifest, out),
                     "prompt": row.get("prompt", "")})
    write_rows(out / "real.jsonl", fitted)
    sets["hard"] = hard
    if cfg.recon:
        recon_file = Path(cfg.recon).expanduser()
        sets["normal"] = []
        for row in read_rows(recon_file, "recon"):
            loser = losers.get(row.get("prompt_index"))
            if loser is None:
                raise ConfigError(f"{recon_file}:{row['_line']}: no pool sample of prompt {row.get('prompt_index')}")
            sets["normal"].append({"winner": _path(row, recon_file, out), "loser": _path(loser, manifest, out),
                                   "prompt": row.get("prompt", "")})
    for stage, stage_rows in sets.items():
        write_rows(out / f"{stage}.jsonl", stage_rows)
    return {**counts, **{f"{stage}_pairs": len(stage_rows) for stage, stage_rows in sets.items()}}


def curate(cfg) -> dict:
    """Write the objective's training manifest(s) and ``counts.json``; returns the counts."""
    from prefopt.data import curation
    from prefopt.data.manifest import read_rows, write_rows
    from prefopt.io import write_json

    manifest = Path(cfg.manifest).expanduser()
    rows = read_rows(manifest)
    if not any("score" in row for row in rows):
        raise ConfigError(f"manifest: {manifest} has no scores (run python -m prefopt.score manifest={manifest})")
    out = Path(cfg.out).expanduser() if cfg.out else manifest.parent / cfg.method
    out.mkdir(parents=True, exist_ok=True)
    if cfg.method in ("ipa", "sft"):
        kept, counts = curation.top(rows, cfg.fraction, cfg.threshold)
        write_rows(out / "train.jsonl", [{"winner": _path(row, manifest, out),
                                          "prompt": row.get("prompt", ""), "reward_w": row["score"]} for row in kept])
    elif cfg.method in ("dpo", "gapo"):
        kept, counts = curation.pairs(rows, cfg.pairing, cfg.min_gap)
        write_rows(out / "train.jsonl", [_pair_row(w, loser, manifest, out) for w, loser in kept])
    else:
        counts = hgdpo_sets(cfg, rows, manifest, out)
    write_json(out / "counts.json", counts)
    print(f"curate {cfg.method}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f"; in {out}")
    return counts


main = command("curate", curate)

if __name__ == "__main__":
    main()
