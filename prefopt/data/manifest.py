"""Sample manifests: the JSONL files that ``prefopt.generate``, ``prefopt.score`` and
``prefopt.curate`` read and write, one JSON object per line, paths relative to the manifest.

    {"path": "samples/000003_001.png", "prompt": "a hand", "prompt_index": 3, "sample": 1, "seed": 13}
    {... "score": 0.82, "scores": {"fingers": 1.0, "clean": 0.64}, "reward": "my.module.fn#1a2b3c4d"}

Every write goes to a temporary file that replaces the manifest (``os.replace``), so a killed
process leaves the old manifest or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefopt.errors import ConfigError
from prefopt.io import write_text


def read_rows(path: Path, key: str = "manifest") -> list[dict]:
    """The rows of a JSONL file; a bad line is a one-line ConfigError naming ``path:line``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}: {path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{number}: not a JSON object")
        row["_line"] = number
        rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (keys starting with ``_`` left out) atomically."""
    write_text(path, "".join(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n"
                             for row in rows))


def media_path(manifest: Path, row: dict, key: str = "path") -> Path:
    """A row's file, resolved against the manifest's folder; a one-line error if it is missing."""
    value = row.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"{manifest}:{row.get('_line', '?')}: no {key!r} path")
    path = Path(manifest).parent / value
    if not path.is_file():
        raise ConfigError(f"{manifest}:{row.get('_line', '?')}: {key} {path}: no such file")
    return path


def relative(path: Path, to_folder: Path) -> str:
    """``path`` as a manifest in ``to_folder`` names it."""
    return os.path.relpath(Path(path).resolve(), Path(to_folder).resolve())
