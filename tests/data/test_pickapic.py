"""Pick-a-Pic v2's schema, as its Parquet shards hold it (every public column), in a folder of
shards: winners first, ties dropped and counted, flipped labels, a corrupt image in a later shard
named by shard and row, and data.on_bad=skip trains on the rest."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from prefopt.config import DataConfig
from prefopt.data.files import build_files
from prefopt.errors import ConfigError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0), "grey": (128, 128, 128)}


def _encoded(colour: str, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), COLOURS[colour]).save(buffer, format=kind)
    return buffer.getvalue()


def _shard(path, rows):
    """A shard with Pick-a-Pic v2's public columns; ``rows``: (jpg_0, jpg_1, label_0, caption)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(rows)
    columns = {
        "are_different": [True] * n, "best_image_uid": [f"uid{i}" for i in range(n)],
        "caption": [r[3] for r in rows], "created_at": [f"2023-0{1 + i % 9}-01 00:00:00" for i in range(n)],
        "has_label": [True] * n, "image_0_uid": [f"a{i}" for i in range(n)], "image_0_url": [f"https://x/a{i}.png" for i in range(n)],
        "image_1_uid": [f"b{i}" for i in range(n)], "image_1_url": [f"https://x/b{i}.png" for i in range(n)],
        "jpg_0": [r[0] for r in rows], "jpg_1": [r[1] for r in rows], "label_0": [r[2] for r in rows],
        "label_1": [None if r[2] is None or r[2] > 1 else 1 - r[2] for r in rows], "model_0": ["sdxl"] * n,
        "model_1": ["sd2.1"] * n, "ranking_id": list(range(n)), "user_id": [7] * n, "num_example_per_prompt": [1] * n,
    }
    pq.write_table(pa.table(columns), path)


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "pickapic" / "data"
    folder.mkdir(parents=True)
    _shard(folder / "train-00000-of-00002.parquet", [
        (_encoded("red"), _encoded("blue"), 1.0, "red wins"),
        (_encoded("blue"), _encoded("green"), 0.0, "green wins (flipped)"),
        (_encoded("red"), _encoded("green"), 0.5, "a tie"),
        (_encoded("white"), _encoded("black"), 1.0, "white wins"),
    ])
    _shard(folder / "train-00001-of-00002.parquet", [
        (_encoded("grey", "JPEG"), _encoded("red"), 0.0, "red wins (flipped, jpeg loser)"),
        (_encoded("red"), _encoded("blue"), 2.0, "a bad label"),
        (b"\x89PNG\r\n\x1a\ngarbage", _encoded("red"), 1.0, "a corrupt image"),
        (_encoded("blue"), _encoded("red"), 0.5, "another tie"),
    ])
    return tmp_path / "pickapic"


def _solid(colour: str, size: int) -> torch.Tensor:
    return (torch.tensor(COLOURS[colour]).float() / 127.5 - 1).view(3, 1, 1).expand(3, size, size)


def test_pick_a_pic_shards_load_winners_first_with_ties_dropped(shards, model_cache):
    second = shards / "data" / "train-00001-of-00002.parquet"
    with pytest.raises(ConfigError, match=rf"^{second} row 2: label_0 is 2.0, not a number in \[0, 1\] "
                                          r"\(and 1 more bad rows\); data.on_bad=skip drops bad rows$"):
        build_files(DataConfig(path=str(shards), image_size=8), paired=True)

    dataset = build_files(DataConfig(path=str(shards), image_size=8, on_bad="skip"), paired=True)
    index = dataset.index
    assert (index["rows"], index["kept"], index["ties"], index["flipped"], index["bad"]) == (8, 4, 2, 2, 2)
    assert index["problems"] == [f"{second} row 2: label_0 is 2.0, not a number in [0, 1]",
                                 f"{second} row 3: winner (bytes): not a readable image (UnidentifiedImageError)"]
    assert [dataset.prompt(i) for i in range(4)] == ["red wins", "green wins (flipped)", "white wins",
                                                    "red wins (flipped, jpeg loser)"]
    for row, (winner, loser) in enumerate([("red", "blue"), ("green", "blue"), ("white", "black"), ("red", "grey")]):
        item = dataset[row]
        torch.testing.assert_close(item["winner"], _solid(winner, 8), atol=0, rtol=0)
        torch.testing.assert_close(item["loser"], _solid(loser, 8), atol=3 / 127.5, rtol=0)  # JPEG grey: +-3 levels


def test_the_same_shards_as_a_glob_a_file_and_renamed_columns(shards, model_cache, tmp_path):
    import pyarrow.parquet as pq

    glob = build_files(DataConfig(path=str(shards / "data" / "*.parquet"), image_size=8, on_bad="skip"), paired=True)
    assert len(glob) == 4
    first = build_files(DataConfig(path=str(shards / "data" / "train-00000-of-00002.parquet"), image_size=8),
                        paired=True)
    assert len(first) == 3  # its tie dropped, nothing bad
    table = pq.read_table(shards / "data" / "train-00000-of-00002.parquet")
    table = table.rename_columns([{"caption": "text", "jpg_0": "a", "jpg_1": "b"}.get(n, n) for n in table.column_names])
    pq.write_table(table, tmp_path / "renamed.parquet")
    renamed = build_files(DataConfig(path=str(tmp_path / "renamed.parquet"), image_size=8,
                                     columns={"caption": "text", "jpg_0": "a", "jpg_1": "b"}), paired=True)
    assert [renamed.prompt(i) for i in range(3)] == [first.prompt(i) for i in range(3)]
    assert torch.equal(renamed[1]["winner"], first[1]["winner"])


def test_a_datasets_folder_written_by_save_to_disk(shards, model_cache, tmp_path):
    """What ``datasets.Dataset.save_to_disk`` writes: Arrow stream files listed in state.json."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "saved"
    folder.mkdir()
    table = pq.read_table(shards / "data" / "train-00000-of-00002.parquet")
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (folder / "dataset_info.json").write_text("{}")
    saved = build_files(DataConfig(path=str(folder), image_size=8), paired=True)
    assert len(saved) == 3 and [saved.prompt(i) for i in range(3)] == ["red wins", "green wins (flipped)", "white wins"]


def test_on_bad_skip_trains_on_the_rest(shards, model_cache, tmp_path):
    from commands import compose

    from prefopt.training import train

    cfg = compose("config", "objective=dpo", "data=files", f"data.path={shards}", "data.on_bad=skip",
                  "data.image_size=8", "model=tiny", "model.config.sample_size=8", "trainer=smoke",
                  "trainer.max_steps=2", "trainer.batch_size=2", "logger=none", "lora.enabled=true")
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 2 and summary["pairs"] == 4
