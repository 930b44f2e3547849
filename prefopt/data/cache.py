"""The pass that reads, checks and encodes file data once, and the cache it writes.

Every process takes its share of the source's units (unit i goes to process i mod N; none twice),
DataLoader workers read and decode them, the process encodes them (a model family's VAE latents,
or the pixels themselves for a pixel model) and writes each unit to its own safetensors file
under ``$PREFOPT_CACHE/latents/<key>/`` (written whole, then renamed: a killed pass continues
where it stopped). Prompts are encoded once each (``prompts-<k>.safetensors``: the text encoder
runs once per unique prompt, shared out the same way). When every unit is done the main process
writes ``index.json``; training then reads rows straight from the memory-mapped files
(:class:`CachedPairs`): nothing grows with the data set in memory.

``key``: the source (each shard's path, size and mtime; a manifest's referenced files too), the
decoding settings, the encoder (family, dtype and every file of the VAE and text encoders) and
the hand-mask settings.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, IterableDataset

from prefopt.data.preference import unflatten
from prefopt.data.rows import Tie, decode_example, interpret
from prefopt.data.sources import Source
from prefopt.errors import ConfigError
from prefopt.io import save_tensors, write_json

PROMPT_CHUNK = 256
OPEN_FILES = 64
COND = "cond."  # a unit's per-row condition tensors (image-to-video), beside the per-prompt ones
PIECE_ROWS = 16  # decoded rows held at once per worker: 16 x 2 x 3 x 1024^2 floats is 400 MiB at SDXL's size
VERSION = "v3"


@dataclass
class Settings:
    """What decides the cached values, besides the source."""

    image_size: int
    num_frames: int | None
    paired: bool
    encoder: str  # the Encoder's fingerprint
    masks: str = ""  # hand-mask settings, when masks are made in the pass

    def key(self, source: Source) -> str:
        digest = hashlib.sha256(f"{VERSION}|{source.fingerprint()}|{json.dumps(self.__dict__, sort_keys=True)}".encode())
        return digest.hexdigest()[:24]


class Single:
    """The runtime of a single process (``prefopt.validate``, tests): no other process to wait for."""

    process_index, num_processes, is_main_process, device = 0, 1, True, torch.device("cpu")

    def wait_for_everyone(self) -> None:
        pass


# ---- reading and decoding, in DataLoader workers -------------------------------------------------

@dataclass
class Piece:
    """Up to ``PIECE_ROWS`` decoded rows of one unit (a unit's pixels never sit in memory at once)."""

    unit: int
    examples: list[dict] = field(default_factory=list)  # decoded, with "row": the row's global number
    problems: list[str] = field(default_factory=list)
    ties: int = 0
    flipped: int = 0
    rows: int = 0  # rows read (blank manifest lines not counted)
    first: str = ""  # the unit's first kept row, named for people
    last: bool = False  # the unit's last piece


class Units(IterableDataset):
    """The decoded rows of ``units`` in pieces, unit by unit; each DataLoader worker reads every k-th unit."""

    def __init__(self, source: Source, units: list, first_rows: list[int], settings: Settings, root: Path):
        self.source, self.units, self.first_rows, self.settings, self.root = source, units, first_rows, settings, root

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.units[info.id::info.num_workers] if info else self.units
        for unit, rows in self.source.read(mine):
            yield from self.pieces(unit, rows)

    def pieces(self, unit, rows: list[dict]):
        piece, shape, first = Piece(unit.index), None, ""
        for offset, row in enumerate(rows):
            if len(piece.examples) == PIECE_ROWS:
                yield piece
                piece = Piece(unit.index, first=first)
            if row.get("_blank"):
                continue
            piece.rows += 1
            try:
                example = self._example(row, shape)
            except Tie:
                piece.ties += 1
                continue
            except ValueError as error:
                piece.problems.append(f"{self.source.where(unit, offset)}: {error}")
                continue
            shape, first = example["winner"].shape, first or self.source.where(unit, offset)
            piece.first = first
            piece.flipped += example.pop("flipped")
            piece.examples.append({**example, "row": self.first_rows[unit.index] + offset})
        piece.last = True
        yield piece

    def _example(self, row: dict, shape) -> dict:
        example = decode_example(interpret(row, self.root, self.settings.paired), self.settings.image_size,
                                 self.settings.num_frames)
        if shape is not None and example["winner"].shape != shape:
            raise ValueError(f"winner has shape {tuple(example['winner'].shape)}, earlier rows {tuple(shape)} "
                             "(set data.num_frames)")
        return example


def probe(source: Source, settings: Settings) -> tuple[int, ...] | None:
    """The pixel shape of the first row that reads (None when none does): checked before encoding."""
    units = source.units()
    reader = Units(source, units, _first_rows(source, units), settings, source_root(source))
    for unit, rows in source.read(units):
        for piece in reader.pieces(unit, rows):
            if piece.examples:
                return tuple(piece.examples[0]["winner"].shape)
    return None


def _first_rows(source: Source, units: list) -> list[int]:
    starts, total = [], 0
    for unit in units:
        starts.append(total)
        total += unit.rows
    return starts


# ---- the pass ----------------------------------------------------------------------------------

def prompt_ids(source: Source) -> dict[str, int]:
    """Every distinct prompt of the source, numbered in order of first appearance (one cheap pass over
    the prompt columns only)."""
    ids: dict[str, int] = {}
    for _, rows in source.read(source.units(), columns=["prompt", "caption"]):
        for row in rows:
            prompt = row.get("prompt", row.get("caption", ""))
            ids.setdefault(prompt if isinstance(prompt, str) else "", len(ids))
    return ids


def precompute(source: Source, settings: Settings, encoder, runtime, cache_dir: Path, workers: int = 0,
               masker=None) -> Path:
    """Fill ``cache_dir/<key>/`` (every process its share) and return the folder; ``index.json``
    marks it complete."""
    folder = Path(cache_dir) / settings.key(source)
    if (folder / "index.json").is_file():
        return folder
    units, started = source.units(), time.perf_counter()
    prompts = prompt_ids(source)
    if encoder.has_cond:
        _encode_prompts(list(prompts), encoder, runtime, folder)
    _pass(source, units, settings, runtime, workers, _Writer(folder, encoder, prompts, masker))
    runtime.wait_for_everyone()
    if runtime.is_main_process:
        write_json(folder / "prompts.json", list(prompts), indent=None)
        index = _index(folder, units, len(prompts), time.perf_counter() - started)
        index["cond"] = encoder.has_cond
        write_json(folder / "index.json", index)
        print(summary_line(index, source))
    runtime.wait_for_everyone()
    return folder


def check(source: Source, settings: Settings, runtime, workers: int = 0) -> dict:
    """Read and check every row (this process's share) without encoding: counts and problems."""
    return _pass(source, source.units(), settings, runtime, workers, None)


def _encode_prompts(prompts: list[str], encoder, runtime, folder: Path) -> None:
    """Each unique prompt's condition tensors, ``PROMPT_CHUNK`` to a file, files shared out among processes."""
    chunks = range(runtime.process_index, -(-len(prompts) // PROMPT_CHUNK), runtime.num_processes)
    for chunk in chunks:
        path = folder / f"prompts-{chunk:06d}.safetensors"
        if path.is_file():
            continue
        texts = prompts[chunk * PROMPT_CHUNK:(chunk + 1) * PROMPT_CHUNK]
        save_tensors(path, encoder.prompts(texts), metadata={"count": str(len(texts))})


def _identity(item):
    return item


def _pass(source, units, settings, runtime, workers: int, writer) -> dict:
    """This process's units read, decoded and checked in DataLoader workers; each handed to ``writer``
    (which skips what an earlier, killed pass wrote) or, without one, only counted."""
    from tqdm.auto import tqdm

    mine = [u for u in units[runtime.process_index::runtime.num_processes] if writer is None or not writer.done(u)]
    loader = torch.utils.data.DataLoader(Units(source, mine, _first_rows(source, units), settings, source_root(source)),
                                         batch_size=None, num_workers=workers, collate_fn=_identity,
                                         generator=torch.Generator())  # leaves the run's RNG as it was
    counts = {"rows": 0, "kept": 0, "bad": 0, "ties": 0, "problems": []}
    sizes = {u.index: u.rows for u in mine}
    progress = tqdm(total=sum(sizes.values()), unit="row", desc="check" if writer is None else "encode",
                    disable=not runtime.is_main_process)
    for piece in loader:
        counts.update(rows=counts["rows"] + piece.rows, kept=counts["kept"] + len(piece.examples),
                      bad=counts["bad"] + len(piece.problems), ties=counts["ties"] + piece.ties)
        counts["problems"] += piece.problems
        if writer is not None:
            writer(piece)
        if piece.last:
            progress.update(sizes[piece.unit])
    progress.close()
    return counts


class _Writer:
    """Encodes a unit's pieces as they come and writes the unit whole as ``unit-<i>.safetensors``
    (its counts in the metadata) when its last piece is in."""

    def __init__(self, folder: Path, encoder, prompts: dict[str, int], masker):
        self.folder, self.encoder, self.prompts, self.masker = folder, encoder, prompts, masker
        self.partial: dict[int, dict] = {}  # unit -> {"tensors": {name: [parts]}, "meta": counts}

    def path(self, index: int) -> Path:
        return self.folder / f"unit-{index:06d}.safetensors"

    def done(self, unit) -> bool:
        return self.path(unit.index).is_file()

    def __call__(self, piece: Piece) -> None:
        unit = self.partial.setdefault(piece.unit, {"tensors": {}, "meta": {"rows": 0, "ties": 0, "flipped": 0,
                                                                              "problems": [], "first": ""}})
        meta = unit["meta"]
        meta.update(rows=meta["rows"] + piece.rows, ties=meta["ties"] + piece.ties,
                    flipped=meta["flipped"] + piece.flipped, first=meta["first"] or piece.first)
        meta["problems"] += piece.problems
        for name, value in self._encoded(piece.examples).items():
            unit["tensors"].setdefault(name, []).append(value)
        if piece.last:
            del self.partial[piece.unit]
            tensors = {name: torch.cat(parts) for name, parts in unit["tensors"].items()}
            rows = len(tensors.setdefault("row", torch.zeros(0, dtype=torch.int64)))
            tensors = {name: value for name, value in tensors.items() if len(value) == rows}  # rewards: all or none
            save_tensors(self.path(piece.unit), tensors, metadata={"info": json.dumps(meta)})

    def _encoded(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            return {}
        tensors = {"row": torch.tensor([e["row"] for e in examples], dtype=torch.int64),
                   "prompt_id": torch.tensor([self.prompts[e["prompt"]] for e in examples], dtype=torch.int64)}
        for key in ("winner", "loser"):
            if key in examples[0]:
                pixels = torch.stack([e[key] for e in examples])
                tensors[key] = self.encoder.latents(pixels)
                if self.masker is not None:
                    tensors[f"mask_{key[0]}"] = self.masker(pixels, tuple(tensors[key].shape[1:]))
                if key == "winner" and self.encoder.has_image_cond:  # I2V: the pair's reference image
                    images = torch.stack([e["image"] if "image" in e else e["winner"][:, 0] for e in examples])
                    tensors.update({f"{COND}{k}": v for k, v in self.encoder.image_cond(images, pixels.shape[2]).items()})
        if all(e.get("reward_w") is not None for e in examples):
            for key in ("reward_w", "reward_l"):
                tensors[key] = torch.tensor([e[key] for e in examples], dtype=torch.float32)
        return tensors


def source_root(source: Source) -> Path:
    """The folder a manifest's relative paths start from."""
    return source.shards[0].parent if source.shards else Path(".")


def _read_unit(path: Path) -> tuple[dict, int, tuple | None, set[str]]:
    """A unit file's (counts, kept rows, sample shape, tensor names)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        kept = handle.get_slice("row").get_shape()[0]
        shape = tuple(handle.get_slice("winner").get_shape()[1:]) if kept else None
        return json.loads(handle.metadata()["info"]), kept, shape, set(handle.keys()) - {"row"}


def _index(folder: Path, units: list, prompts: int, seconds: float) -> dict:
    """The cache's table of contents, read from the units' own metadata (written by every process)."""
    table, totals, problems = [], {"rows": 0, "kept": 0, "bad": 0, "ties": 0, "flipped": 0}, []
    shape, fields = None, None
    for unit in units:
        meta, kept, unit_shape, names = _read_unit(folder / f"unit-{unit.index:06d}.safetensors")
        if kept:
            if shape is not None and unit_shape != shape:
                raise ConfigError(f"{meta['first']}: winner has shape {unit_shape}, earlier rows {shape} "
                                  "(set data.num_frames)")
            shape, fields = unit_shape, names if fields is None else fields & names  # rewards: when every row has them
        table.append({"file": f"unit-{unit.index:06d}.safetensors", "kept": kept})
        totals.update(rows=totals["rows"] + meta["rows"], kept=totals["kept"] + kept, ties=totals["ties"] + meta["ties"],
                      bad=totals["bad"] + len(meta["problems"]), flipped=totals["flipped"] + meta["flipped"])
        problems += meta["problems"]
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return {"units": table, "prompts": prompts, "prompt_chunk": PROMPT_CHUNK, "sample_shape": shape,
            "fields": sorted(fields or []), "problems": problems, **totals, "bytes": size, "seconds": seconds}


def summary_line(index: dict, source) -> str:
    return (f"data: {index['rows']:,} rows of {source.kind} data, {index['kept']:,} kept, {index['bad']:,} bad, "
            f"{index['ties']:,} ties dropped, {index['prompts']:,} unique prompts, cache {index['bytes'] / 2**20:,.0f} MiB")


# ---- training reads ----------------------------------------------------------------------------

class CachedPairs(Dataset):
    """The rows of a complete cache folder, read from the memory-mapped unit files as needed."""

    def __init__(self, folder: Path, name: str, paired: bool):
        self.folder, self.name = Path(folder), name
        self.index = json.loads((self.folder / "index.json").read_text())
        kept = [u["kept"] for u in self.index["units"]]
        self.units = [u["file"] for u, k in zip(self.index["units"], kept, strict=True) if k]
        self.ends = []
        for count in (k for k in kept if k):
            self.ends.append((self.ends[-1] if self.ends else 0) + count)
        self.fields = {name: None for name in self.index["fields"] if name != "prompt_id"}
        self.masks: dict[str, torch.Tensor] = {}
        self._handles, self._prompts = OrderedDict(), None
        self.info = {"cache": str(self.folder), "ties_dropped": self.index["ties"], "rows": self.index["rows"]}

    @property
    def paired(self) -> bool:
        return "loser" in self.fields

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.index["sample_shape"])

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def _handle(self, name: str):
        """An open (memory-mapped) file; at most ``OPEN_FILES`` stay open (851k rows make 3,300 units)."""
        from safetensors import safe_open

        if name in self._handles:
            self._handles.move_to_end(name)
        else:
            self._handles[name] = safe_open(str(self.folder / name), framework="pt")
            if len(self._handles) > OPEN_FILES:
                self._handles.popitem(last=False)
        return self._handles[name]

    def _locate(self, index: int):
        """(the open unit file holding row ``index``, the row's offset in it)."""
        unit = bisect.bisect_right(self.ends, index)
        return self._handle(self.units[unit]), index - (self.ends[unit - 1] if unit else 0)

    def __getitem__(self, index: int) -> dict:
        handle, offset = self._locate(index)
        item = {key: handle.get_slice(key)[offset] for key in self.fields if key not in self.masks}
        item.update({key: value[index] for key, value in self.masks.items()})
        if self.index["cond"]:
            chunk, row = divmod(int(handle.get_slice("prompt_id")[offset]), self.index["prompt_chunk"])
            prompts = self._handle(f"prompts-{chunk:06d}.safetensors")
            flat = {key: prompts.get_slice(key)[row] for key in prompts.keys()}
            flat.update({key[len(COND):]: item.pop(key) for key in list(item) if key.startswith(COND)})
            item["cond"] = unflatten(flat)
        return item

    def prompt(self, index: int) -> str:
        """Row ``index``'s prompt (the cache keeps each distinct prompt once)."""
        if self._prompts is None:
            self._prompts = json.loads((self.folder / "prompts.json").read_text())
        handle, offset = self._locate(index)
        return self._prompts[int(handle.get_slice("prompt_id")[offset])]

    def set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        """Hand masks given whole (``hand_aware.source=file``), one row per kept row."""
        for key, mask in masks.items():
            if len(mask) != len(self):
                raise ConfigError(f"{self.name}: {key} has {len(mask)} rows, the data has {len(self)}")
        self.masks.update(masks)
        self.fields.update(dict.fromkeys(masks))

    def __getstate__(self):  # DataLoader workers open their own handles
        return {**self.__dict__, "_handles": OrderedDict()}


__all__ = ["CachedPairs", "Settings", "Single", "check", "precompute", "prompt_ids", "summary_line"]
