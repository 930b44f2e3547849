"""Real model families through the embedded default's code path: tiny random-init SD 1.5, SDXL, SD3,
FLUX, AnimateDiff, Wan (text- and image-to-video) and CogVideoX (text- and image-to-video) pipelines
(diffusers' own classes, written with save_pretrained) trained from ``model.path`` on files with
prompts; their LoRA loads into the original pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from tiny_families import ALPHA, FAMILIES, FRAMES, I2V, RANK, SIZE, UNETS, VIDEO, family_config, family_overrides

from prefopt.errors import ConfigError
from prefopt.training import train


def generate(pipe, family):
    kwargs = dict(prompt="a hand waving", height=SIZE, width=SIZE, num_inference_steps=2, output_type="pt",
                  generator=torch.Generator().manual_seed(0))
    if family in I2V:
        kwargs["image"] = Image.fromarray(np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    if family in VIDEO:
        return pipe(num_frames=FRAMES, **kwargs).frames
    return pipe(**kwargs).images


@pytest.mark.parametrize("objective", ["dpo", "ipa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_from_model_path_and_its_lora_loads_into_the_pipeline(
        family, objective, pipelines, manifests, model_cache, tmp_path):
    from diffusers import DiffusionPipeline

    summary = train(family_config(f"objective={objective}", *family_overrides(family, pipelines, manifests)), tmp_path / "run")
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    final = tmp_path / "run" / "final"
    with safe_open(str(final / "pytorch_lora_weights.safetensors"), "pt") as handle:
        keys = list(handle.keys())
        metadata = handle.metadata()
    prefix = "unet." if family in UNETS else "transformer."
    assert keys and all(k.startswith(prefix) for k in keys)
    down_key, up_key = (".lora.down.", ".lora.up.") if ".lora.down." in keys[0] else (".lora_A.", ".lora_B.")
    assert all(down_key in k or up_key in k for k in keys)  # the pipeline's LoRA key format (diffusers' or peft's)
    config = json.loads(metadata["lora_adapter_metadata"])  # the LoRA config travels with the weights
    assert config[f"{prefix}r"] == RANK and config[f"{prefix}lora_alpha"] == ALPHA

    pipe = DiffusionPipeline.from_pretrained(pipelines[family])
    original = generate(pipe, family)
    pipe.load_lora_weights(final)
    adapted = generate(pipe, family)
    assert (adapted - original).abs().max() > 1e-6  # the adapter changes the output
    pipe.disable_lora()
    assert torch.equal(generate(pipe, family), original)  # adapters off: exactly the original pipeline

    # the loaded adapter is the trained one at its scale: W + (alpha / r) B A, computed from the file
    pipe.enable_lora()
    pipe.fuse_lora()
    weights = load_file(str(final / "pytorch_lora_weights.safetensors"))
    down = next(k for k in weights if k.endswith(f"{down_key}weight"))
    module = down[len(prefix):-len(f"{down_key}weight")]
    denoiser = prefix[:-1]
    original_weight = load_file(str(pipelines[family] / denoiser / "diffusion_pytorch_model.safetensors"))[f"{module}.weight"]
    layer = pipe.components[denoiser].get_submodule(module)
    fused = getattr(layer, "base_layer", layer).weight  # a fused peft layer keeps the sum in its base layer
    expected = original_weight + ALPHA / RANK * weights[down.replace(down_key, up_key)] @ weights[down]
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case, message", [
    ("images_to_video", "model.family=wan trains on videos (3, T, H, W)"),
    ("wan_frames", "data.num_frames: Wan's causal VAE needs 4k+1 frames, got 4"),
    ("no_path", "model.path"),
    ("not_a_pipeline", "has no model_index.json"),
    ("i2v_family_t2v_folder", "model.family=wan_i2v: "),
    ("learned_positions", "its learned positional embeddings take 32x32 frames only"),
])
def test_family_misconfigurations_are_one_line(case, message, pipelines, manifests, model_cache, tmp_path):
    import shutil

    overrides = {"images_to_video": [*family_overrides("wan", pipelines, manifests)[:2], f"data.path={manifests['images']}"],
                 "no_path": ["model=sd15", f"data.path={manifests['images']}"],
                 "not_a_pipeline": ["model=sd15", f"model.path={pipelines['sd15'] / 'unet'}",
                                    f"data.path={manifests['images']}"],
                 "i2v_family_t2v_folder": ["model=wan_i2v", f"model.path={pipelines['wan']}",
                                           f"data.path={manifests['clips']}", f"data.num_frames={FRAMES}"],
                 "learned_positions": [*family_overrides("cogvideox_i2v", pipelines, manifests), "data.image_size=48"]}
    if case == "wan_frames":
        root = tmp_path / "four"
        shutil.copytree(manifests["clips"].parent, root)
        import cv2

        for row in [json.loads(line) for line in (root / "clips.jsonl").read_text().splitlines()]:
            for key in ("winner", "loser"):
                capture = cv2.VideoCapture(str(root / row[key]))
                frames = [capture.read()[1] for _ in range(4)]
                writer = cv2.VideoWriter(str(root / row[key]), cv2.VideoWriter_fourcc(*"mp4v"), 8, (SIZE, SIZE))
                for frame in frames:
                    writer.write(frame)
                writer.release()
        overrides["wan_frames"] = ["model=wan", f"model.path={pipelines['wan']}", f"data.path={root / 'clips.jsonl'}",
                                   "data.num_frames=4"]
    with pytest.raises(Exception) as error:
        train(family_config("objective=dpo", *overrides[case]), tmp_path / "run")
    text = str(error.value)
    assert message in text and "\n" not in text
    if case != "no_path":
        assert isinstance(error.value, ConfigError)


def _spy_on_the_model(monkeypatch) -> dict:
    """The trained model's parameter dtypes and checkpointing flag, as the loop's first step sees them."""
    import prefopt.training.loop as trainer_module

    seen, original = {}, trainer_module.batch_loss

    def spy(objective, model, *args, **kwargs):
        if not seen:
            named = list(model.named_parameters())
            seen.update(base={p.dtype for n, p in named if "lora" not in n},
                        lora={p.dtype for n, p in named if "lora" in n},
                        checkpointing=model.is_gradient_checkpointing)
        return original(objective, model, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "batch_loss", spy)
    return seen


def test_bf16_keeps_the_frozen_base_in_half_precision_and_trains_the_adapter_in_fp32(
        pipelines, manifests, model_cache, tmp_path, monkeypatch):
    seen = _spy_on_the_model(monkeypatch)
    summary = train(family_config("objective=dpo", "trainer.mixed_precision=bf16", *family_overrides("sd15", pipelines, manifests)),
                    tmp_path / "run")
    assert seen["base"] == {torch.bfloat16} and seen["lora"] == {torch.float32}
    assert np.isfinite(summary["loss"])
    weights = load_file(str(tmp_path / "run" / "final" / "pytorch_lora_weights.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_gradient_checkpointing_changes_memory_not_results(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    runs = {}
    for flag in (True, False):
        seen = _spy_on_the_model(monkeypatch)
        train(family_config("objective=dpo", f"model.gradient_checkpointing={flag}", *family_overrides("sd15", pipelines, manifests)),
              tmp_path / str(flag))
        assert seen["checkpointing"] is flag
        runs[flag] = load_file(str(tmp_path / str(flag) / "final" / "pytorch_lora_weights.safetensors"))
        monkeypatch.undo()
    for key in runs[True]:
        torch.testing.assert_close(runs[True][key], runs[False][key], rtol=0, atol=1e-6)

