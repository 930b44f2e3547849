"""A Pick-a-Pic-style Parquet fixture with ties, flipped labels, both image columns and a bad row:
winners first, ties dropped and counted, the bad row named."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from prefopt.config import DataConfig
from prefopt.data.files import build_files
from prefopt.data.pickapic import convert
from prefopt.errors import ConfigError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255),
           "black": (0, 0, 0), "grey": (128, 128, 128)}


def _encoded(colour: str, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 12), COLOURS[colour]).save(buffer, format=kind)
    return buffer.getvalue()


@pytest.fixture
def parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    Image.new("RGB", (12, 12), COLOURS["white"]).save(tmp_path / "white.png")
    Image.new("RGB", (12, 12), COLOURS["black"]).save(tmp_path / "black.png")
    rows = [  # (jpg_0, jpg_1, image_0, image_1, label_0, label_1, caption)
        (_encoded("red"), _encoded("blue"), None, None, 1.0, 0.0, "red wins"),
        (_encoded("blue"), _encoded("green"), None, None, 0.0, 1.0, "green wins (flipped)"),
        (_encoded("red"), _encoded("green"), None, None, 0.5, 0.5, "a tie"),
        (None, None, "white.png", "black.png", 1.0, None, "white wins (paths)"),
        (_encoded("grey", "JPEG"), _encoded("red"), None, None, 0.0, 1.0, "red wins (flipped, jpeg loser)"),
        (_encoded("red"), _encoded("blue"), None, None, 2.0, None, "a bad label"),
        (_encoded("blue"), _encoded("red"), None, None, 0.5, None, "another tie"),
    ]
    names = ["jpg_0", "jpg_1", "image_0", "image_1", "label_0", "label_1", "caption"]
    table = pa.table({name: [row[k] for row in rows] for k, name in enumerate(names)},
                     schema=pa.schema([("jpg_0", pa.binary()), ("jpg_1", pa.binary()), ("image_0", pa.string()),
                                       ("image_1", pa.string()), ("label_0", pa.float64()),
                                       ("label_1", pa.float64()), ("caption", pa.string())]))
    pq.write_table(table, tmp_path / "pairs.parquet")
    return tmp_path / "pairs.parquet"


def _solid(colour: str, size: int) -> torch.Tensor:
    return (torch.tensor(COLOURS[colour]).float() / 127.5 - 1).view(3, 1, 1).expand(3, size, size)


def test_pick_a_pic_pairs_load_winners_first_with_ties_dropped(parquet, tmp_path, model_cache):
    converted = convert(parquet, tmp_path / "cache")
    assert (converted.rows, converted.pairs, converted.ties, converted.flipped) == (7, 4, 2, 2)
    assert converted.problems == [f"{parquet} row 6: label_0 is 2.0, not a number in [0, 1]"]

    cfg = DataConfig(name="files", path=str(parquet), image_size=8, on_bad="skip")
    dataset = build_files(cfg, paired=True)
    assert len(dataset) == 4 and dataset.info["ties_dropped"] == 2
    assert dataset.prompts == ["red wins", "green wins (flipped)", "white wins (paths)",
                               "red wins (flipped, jpeg loser)"]
    for index, (winner, loser) in enumerate([("red", "blue"), ("green", "blue"), ("white", "black"),
                                             ("red", "grey")]):
        item = dataset[index]
        torch.testing.assert_close(item["winner"], _solid(winner, 8), atol=0, rtol=0)
        torch.testing.assert_close(item["loser"], _solid(loser, 8), atol=3 / 127.5, rtol=0)  # JPEG grey: +-3 levels

    with pytest.raises(ConfigError, match=r"pairs.parquet row 6: label_0 is 2.0, not a number in \[0, 1\]"
                                          r"; data.on_bad=skip drops bad rows"):
        build_files(DataConfig(name="files", path=str(parquet), image_size=8), paired=True)
