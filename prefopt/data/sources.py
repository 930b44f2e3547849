"""Where preference data lives on disk, read lazily in fixed slices ("units") of rows.

    data.path=pairs.jsonl            a JSONL manifest: winner/loser paths (relative to it), prompt, rewards
    data.path=<file|folder|glob>     Parquet shards, e.g. Pick-a-Pic v2: jpg_0/jpg_1 bytes, label_0, caption
    data.path=<folder>               a Hugging Face ``datasets`` folder (``save_to_disk``: Arrow files
                                     listed in state.json) or a hub snapshot's Parquet shards

Rows come out in one fixed order (shards sorted by name, rows in file order) as plain dicts;
``data.columns`` renames a schema's columns to these names first (``{caption: text}``: the
prompt is read from ``text``). A unit is ``UNIT_ROWS`` consecutive rows of one shard: the work
unit of the parallel, resumable pass that validates and encodes the data (prefopt/data/cache.py).
Only the rows of the units asked for are decoded; nothing holds the data set in memory.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from prefopt.errors import ConfigError

UNIT_ROWS = 256


@dataclass(frozen=True)
class Unit:
    index: int  # in the source's order of units
    shard: int
    start: int  # first row in the shard (0-based)
    rows: int


class Source:
    """Shards of one kind; ``units()`` from metadata only, ``read(units)`` the raw rows of those units."""

    kind = ""

    def __init__(self, shards: list[Path], columns: dict[str, str] | None = None):
        self.shards, self.columns = shards, dict(columns or {})
        self._counts = None

    def counts(self) -> list[int]:
        """Rows per shard."""
        if self._counts is None:
            self._counts = [self._count(shard) for shard in self.shards]
        return self._counts

    def units(self) -> list[Unit]:
        units = []
        for shard, count in enumerate(self.counts()):
            for start in range(0, count, UNIT_ROWS):
                units.append(Unit(len(units), shard, start, min(UNIT_ROWS, count - start)))
        return units

    def where(self, unit: Unit, offset: int) -> str:
        """A row named for people: its shard and 1-based row (a manifest's line)."""
        return f"{self.shards[unit.shard]} row {unit.start + offset + 1}"

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.kind}|{json.dumps(self.columns, sort_keys=True)}".encode())
        for shard in self.shards:
            stat = shard.stat()
            digest.update(f"{shard.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def read(self, units: list[Unit], columns: list[str] | None = None):
        """(unit, [row dicts]) for each of ``units`` (in order), reading each shard once."""
        by_shard: dict[int, list[Unit]] = {}
        for unit in units:
            by_shard.setdefault(unit.shard, []).append(unit)
        wanted = None if columns is None else [self.columns.get(c, c) for c in columns]
        for shard, shard_units in sorted(by_shard.items()):
            yield from _cut(self._batches(self.shards[shard], wanted), shard_units, self._rename)

    def _rename(self, row: dict) -> dict:
        if not self.columns:
            return row
        renamed = {source: target for target, source in self.columns.items()}
        return {renamed.get(key, key): value for key, value in row.items()}

    def _count(self, shard: Path) -> int:
        raise NotImplementedError

    def _batches(self, shard: Path, columns):
        """Lists of row dicts, in file order."""
        raise NotImplementedError


def _cut(batches, units: list[Unit], rename):
    """(unit, rows) for ``units`` (sorted by start) out of a shard's stream of row batches."""
    pending = iter(units)
    unit, rows, position = next(pending, None), [], 0
    for batch in batches:
        end = position + len(batch)
        while unit is not None and unit.start < end:
            rows += [rename(row) for row in batch[max(unit.start, position) - position:
                                                  min(unit.start + unit.rows, end) - position]]
            if unit.start + unit.rows > end:
                break
            yield unit, rows
            unit, rows = next(pending, None), []
        if unit is None:
            return
        position = end


class JsonlSource(Source):
    kind = "jsonl"

    def _count(self, shard: Path) -> int:
        with open(shard, "rb") as handle:
            return sum(1 for _ in handle)

    def where(self, unit: Unit, offset: int) -> str:
        return f"{self.shards[unit.shard]}:{unit.start + offset + 1}"

    def fingerprint(self) -> str:
        """The manifest's and every file it names (size and mtime): a replaced picture is a new cache."""
        digest = hashlib.sha256(super().fingerprint().encode())
        for shard in self.shards:
            for batch in self._batches(shard, None):
                for row in batch:
                    for key in ("winner", "loser", "image_0", "image_1"):
                        if isinstance(row.get(key), str):
                            path = shard.parent / row[key]
                            stat = path.stat() if path.is_file() else None
                            digest.update(f"{path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def _batches(self, shard: Path, columns):
        with open(shard, encoding="utf-8-sig", errors="replace") as handle:
            batch = []
            for line in handle:
                batch.append(_json_row(line))
                if len(batch) == UNIT_ROWS:
                    yield batch
                    batch = []
            if batch:
                yield batch


def _json_row(line: str) -> dict:
    """A manifest line as a row; a bad line becomes a row that says so (validated later), a blank one empty."""
    if not line.strip():
        return {"_blank": True}
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        return {"_error": f"not JSON ({error.msg})"}
    return row if isinstance(row, dict) else {"_error": "not a JSON object"}


class ParquetSource(Source):
    kind = "parquet"

    def _count(self, shard: Path) -> int:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(shard).metadata.num_rows
        except Exception as error:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise ConfigError(f"data.path: {shard}: not a readable Parquet file ({type(error).__name__})") from None

    def _batches(self, shard: Path, columns):
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(shard)
        present = None if columns is None else [c for c in columns if c in handle.schema_arrow.names]
        for batch in handle.iter_batches(batch_size=UNIT_ROWS, columns=present):
            yield batch.to_pylist()


class ArrowSource(Source):
    """A ``datasets.Dataset.save_to_disk`` folder: Arrow stream files, memory-mapped."""

    kind = "arrow"

    def _count(self, shard: Path) -> int:
        return sum(batch.num_rows for batch in self._reader(shard))

    @staticmethod
    def _reader(shard: Path):
        import pyarrow as pa

        return pa.ipc.open_stream(pa.memory_map(str(shard)))

    def _batches(self, shard: Path, columns):
        for batch in self._reader(shard):
            if columns is not None:
                batch = batch.select([c for c in columns if c in batch.schema.names])
            yield batch.to_pylist()


def open_source(path: str, columns: dict[str, str] | None = None) -> Source:
    """The source at ``data.path``: a JSONL file, Parquet file(s) (a file, a folder, a glob) or a
    ``datasets`` folder; a one-line ConfigError naming the path otherwise."""
    if not path:
        raise ConfigError("data.path: data=files needs a JSONL manifest, Parquet shards or a datasets folder")
    target = Path(path).expanduser()
    if any(ch in path for ch in "*?["):
        shards = sorted(Path(p) for p in glob.glob(str(target), recursive=True) if p.endswith(".parquet"))
        if not shards:
            raise ConfigError(f"data.path: {path}: the glob matches no .parquet file")
        return ParquetSource(shards, columns)
    if target.is_file():
        return (ParquetSource if target.suffix == ".parquet" else JsonlSource)([target], columns)
    if target.is_dir():
        state = target / "state.json"
        if state.is_file():
            files = [target / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
            return ArrowSource(files, columns)
        shards = sorted(target.rglob("*.parquet"))
        if shards:
            return ParquetSource(shards, columns)
        raise ConfigError(f"data.path: {target}: a folder with neither Parquet shards nor a datasets state.json")
    raise ConfigError(f"data.path: {target}: no such file")
