"""Files stream: the pass shares its units among processes (each row encoded once, each prompt
once), the cache trains to the same weights as the same rows held in memory, and a resumed order
starts where it stopped without loading what came before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from user_data import decoded

from prefopt.data.sampler import loader

ROWS, PROMPTS = 600, 7  # 600 rows make 3 units of 256, 256 and 88


def _pairs(root: Path, rows: int = ROWS, size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(rows):
        for role in "wl":
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "img" / f"{i}{role}.png")
        lines.append({"winner": f"img/{i}w.png", "loser": f"img/{i}l.png", "prompt": f"prompt {i % PROMPTS}"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root / "pairs.jsonl"


SCRIPT = textwrap.dedent("""
    import json, sys
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    from prefopt.config import DataConfig
    from prefopt.data.files import Runtime, build_files
    from prefopt.models.builders import build_model
    from prefopt.config import ModelConfig
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    bundle = build_model(ModelConfig(name="sd15", family="sd15", path=sys.argv[2], denoiser_class="UNet2DConditionModel"))
    import prefopt.data.files as files
    made = []
    original = files.FamilyEncoder
    class Counting(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
    files.FamilyEncoder = Counting
    dataset = build_files(DataConfig(path=sys.argv[1], image_size=16), paired=True, model=bundle,
                          runtime=Runtime(state))
    json.dump({"prompts_encoded": sum(e.prompts_encoded for e in made), "rows": len(dataset)},
              open(sys.argv[3] + f".{state.process_index}", "w"))
""")


def test_two_processes_encode_every_row_once_and_every_prompt_once(tmp_path, model_cache):
    from safetensors import safe_open

    from prefopt.models import tiny_pipelines

    manifest = _pairs(tmp_path / "data")
    pipeline = tiny_pipelines.build("sd15", tmp_path / "sd15")
    script = tmp_path / "encode.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PREFOPT_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", "29517", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(script), str(manifest), str(pipeline), str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outs = [json.loads((tmp_path / f"out.{rank}").read_text()) for rank in (0, 1)]
    assert [o["rows"] for o in outs] == [ROWS, ROWS]
    assert sum(o["prompts_encoded"] for o in outs) == PROMPTS  # the text encoder ran once per unique prompt
    (folder,) = (cache / "latents").iterdir()
    rows = []
    for unit in sorted(folder.glob("unit-*.safetensors")):
        with safe_open(str(unit), framework="pt") as handle:
            rows += handle.get_tensor("row").tolist()
    assert sorted(rows) == list(range(ROWS)) and len(rows) == len(set(rows))  # every row once, none twice


def test_a_killed_pass_continues_where_it_stopped(tmp_path, model_cache, monkeypatch):
    from prefopt.config import DataConfig
    from prefopt.data import cache as cache_module
    from prefopt.data.files import build_files

    manifest = _pairs(tmp_path / "data", rows=300)  # units of 256 and 44 rows
    finished, original = [], cache_module._Writer.__call__

    def dies_after_one_unit(self, piece):
        if finished:
            raise KeyboardInterrupt("killed")
        original(self, piece)
        if piece.last:
            finished.append(piece.unit)

    monkeypatch.setattr(cache_module._Writer, "__call__", dies_after_one_unit)
    with pytest.raises(KeyboardInterrupt):
        build_files(DataConfig(path=str(manifest), image_size=8), paired=True)
    monkeypatch.undo()
    encoded = set()
    monkeypatch.setattr(cache_module._Writer, "__call__", lambda self, piece: (encoded.add(piece.unit),
                                                                               original(self, piece)))
    dataset = build_files(DataConfig(path=str(manifest), image_size=8), paired=True)
    assert finished == [0] and encoded == {1}  # the second start encoded only the unit the first did not finish
    assert len(dataset) == 300 and torch.equal(dataset[299]["winner"], decoded(manifest.parent / "img" / "299w.png", 8))


def test_the_cache_trains_to_the_weights_of_the_same_rows_in_memory(tmp_path, model_cache):
    """The streamed path against the rows decoded here and held in memory (what prefopt did before):
    same order, noise and steps give the same weights."""
    from commands import compose
    from safetensors.torch import load_file

    from prefopt.training import train

    manifest = _pairs(tmp_path / "data", rows=40)
    common = ["objective=dpo", "model=tiny", "model.config.sample_size=8", "data.image_size=8", "trainer=smoke",
              "trainer.max_steps=6", "trainer.batch_size=4", "logger=none", "lora.enabled=true",
              "trainer.learning_rate=1e-3"]
    train(compose("config", *common, "data=files", f"data.path={manifest}"), tmp_path / "streamed")
    os.environ["PREFOPT_TEST_MANIFEST"] = str(manifest)
    train(compose("config", *common, "data=files", "data.builder=user_data.in_memory"), tmp_path / "memory")
    streamed = load_file(tmp_path / "streamed" / "final" / "pytorch_lora_weights.safetensors")
    memory = load_file(tmp_path / "memory" / "final" / "pytorch_lora_weights.safetensors")
    assert streamed.keys() == memory.keys() and all(torch.equal(streamed[k], memory[k]) for k in streamed)


class Counted(torch.utils.data.Dataset):
    def __init__(self, size):
        self.size, self.loaded = size, 0

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        self.loaded += 1
        return index


@pytest.mark.parametrize("done", [0, 3, 5, 6, 13, 19])
def test_a_resumed_order_is_the_uninterrupted_one_without_loading_the_past(done):
    """The order is DataLoader(shuffle=True, generator=seeded)'s, epoch after epoch; resumed after
    ``done`` batches it continues that order and loads only the batches it yields."""
    def stream(batches, count):
        out, it = [], iter(batches)
        while len(out) < count:
            try:
                out.append(next(it).tolist())
            except StopIteration:
                it = iter(batches)
        return out

    reference = stream(DataLoader(list(range(23)), batch_size=4, shuffle=True, drop_last=True,
                                  generator=torch.Generator().manual_seed(7)), 20)
    data = Counted(23)
    resumed = stream(loader(data, 4, seed=7, batches_done=done, batches_per_epoch=23 // 4), 20 - done)
    assert resumed == reference[done:]
    assert data.loaded == 4 * (20 - done)


def test_a_replaced_picture_is_read_again(tmp_path, model_cache):
    from prefopt.config import DataConfig
    from prefopt.data.files import build_files

    manifest = _pairs(tmp_path / "data", rows=8)
    before = build_files(DataConfig(path=str(manifest), image_size=8), paired=True)
    Image.new("RGB", (12, 12), (255, 0, 0)).save(manifest.parent / "img" / "3w.png")  # the manifest is unchanged
    after = build_files(DataConfig(path=str(manifest), image_size=8), paired=True)
    assert after.folder != before.folder
    assert torch.equal(after[3]["winner"], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1).expand(3, 8, 8))
