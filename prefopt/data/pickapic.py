"""Pick-a-Pic-style preference pairs in Parquet (``data=files data.path=<pairs.parquet>``).

One row per comparison: two images, ``jpg_0``/``jpg_1`` (encoded bytes, as Pick-a-Pic v1 ships them)
or ``image_0``/``image_1`` (paths relative to the file); ``label_0`` (1: image 0 preferred, 0: image
1 preferred, 0.5: a tie; ``label_1``, when present, must be 1 - label_0); ``caption`` (the prompt,
optional). Ties are dropped, as the Diffusion-DPO paper drops them, and counted; every kept pair has
its winner first.

The file is converted once into a folder of images (the original bytes, not re-encoded) and a JSONL
manifest that prefopt/data/files.py reads, under ``$PREFOPT_CACHE/pickapic/<key>`` (key: the file's
path, size and mtime). A bad row (a missing or unreadable image, a label outside [0, 1]) is one line
naming the file and row, handled by ``data.on_bad`` like any manifest row.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from prefopt.errors import ConfigError

BATCH_ROWS = 256


@dataclass
class Converted:
    manifest: Path
    rows: int = 0
    pairs: int = 0
    ties: int = 0
    flipped: int = 0  # pairs whose winner is image 1
    problems: list[str] = field(default_factory=list)


def _image(source: Path, row: dict, index: int) -> tuple[bytes, str]:
    """(encoded bytes, suffix) of image ``index`` of a row; ValueError naming what is wrong."""
    from PIL import Image, UnidentifiedImageError

    data = row.get(f"jpg_{index}")
    if data is None and isinstance(row.get(f"image_{index}"), str):
        path = source.parent / row[f"image_{index}"]
        if not path.is_file():
            raise ValueError(f"image_{index} {path}: no such file")
        data = path.read_bytes()
    if not isinstance(data, bytes | bytearray):
        raise ValueError(f"no jpg_{index} bytes or image_{index} path")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind = (image.format or "png").lower()
    except (OSError, UnidentifiedImageError, SyntaxError):
        raise ValueError(f"image {index} is not a readable image") from None
    return bytes(data), ".jpg" if kind == "jpeg" else f".{kind}"


def _label(row: dict) -> float:
    label = row.get("label_0")
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label) or not 0 <= label <= 1:
        raise ValueError(f"label_0 is {label!r}, not a number in [0, 1]")
    other = row.get("label_1")
    if other is not None and abs(float(other) + float(label) - 1) > 1e-6:
        raise ValueError(f"label_1 {other} is not 1 - label_0 ({label})")
    return float(label)


def convert(source: Path, cache: Path) -> Converted:
    """The converted folder of ``source`` (made on first use; a complete one is reused)."""
    import pyarrow.parquet as pq

    from prefopt.data.manifest import write_rows
    from prefopt.io import write_json

    stat = source.stat()
    key = hashlib.sha256(f"v1|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    folder = cache / key
    done = folder / "converted.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        return Converted(**{**saved, "manifest": Path(saved["manifest"])})
    try:
        table = pq.ParquetFile(source)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise ConfigError(f"data.path: {source}: not a readable Parquet file ({type(error).__name__})") from None
    (folder / "images").mkdir(parents=True, exist_ok=True)
    result, rows, number = Converted(manifest=folder / "pairs.jsonl"), [], 0
    for batch in table.iter_batches(batch_size=BATCH_ROWS):
        for row in batch.to_pylist():
            number += 1
            result.rows += 1
            try:
                label = _label(row)
                images = [_image(source, row, 0), _image(source, row, 1)]
            except ValueError as error:
                result.problems.append(f"{source} row {number}: {error}")
                continue
            if label == 0.5:
                result.ties += 1
                continue
            winner, loser = (0, 1) if label > 0.5 else (1, 0)
            result.flipped += winner == 1
            names = []
            for role, index in (("w", winner), ("l", loser)):
                data, suffix = images[index]
                name = f"images/{number:07d}_{role}{suffix}"
                (folder / name).write_bytes(data)
                names.append(name)
            caption = row.get("caption")
            rows.append({"winner": names[0], "loser": names[1], "prompt": caption if isinstance(caption, str) else ""})
    result.pairs = len(rows)
    write_rows(result.manifest, rows)
    write_json(done, {**result.__dict__, "manifest": str(result.manifest)})  # last: marks the folder complete
    return result
