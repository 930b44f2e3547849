"""Real model families through the embedded default's code path: tiny random-init SD 1.5, SDXL, SD3,
FLUX, AnimateDiff, Wan (text- and image-to-video) and CogVideoX (text- and image-to-video) pipelines
(diffusers' own classes, written with save_pretrained) trained from ``model.path`` on files with
prompts; their LoRA loads into the original pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from prefopt.cli import to_config
from prefopt.errors import ConfigError
from prefopt.models import tiny_pipelines
from prefopt.training import train

CONF = str(Path(__file__).resolve().parents[2] / "conf")
FAMILIES = ["sd15", "sdxl", "sd3", "flux", "animatediff", "wan", "wan_i2v", "cogvideox", "cogvideox_i2v"]
VIDEO = {"animatediff", "wan", "wan_i2v", "cogvideox", "cogvideox_i2v"}
I2V = {"wan_i2v", "cogvideox_i2v"}
UNETS = {"sd15", "sdxl", "animatediff"}
MODEL = {"cogvideox_i2v": "cogvideox"}  # the conf/model option of each tiny pipeline (one family, both kinds)
SIZE, FRAMES, RANK, ALPHA = 32, 5, 4, 8.0


def _config(*overrides):
    base = ["logger=none", "data=files", f"data.image_size={SIZE}", "eval.num_samples=0", "trainer=smoke",
            "trainer.max_steps=3", "trainer.batch_size=2", "trainer.log_every=1", "trainer.learning_rate=1e-3",
            f"lora.rank={RANK}", f"lora.alpha={ALPHA}"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return to_config(compose("config", overrides=[*base, *overrides]))


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {family: tiny_pipelines.build(family, root / family) for family in FAMILIES}


def _video(path: Path, seed: int) -> str:
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (SIZE, SIZE))
    for _ in range(FRAMES):
        writer.write(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    writer.release()
    return path.name


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """Four pairs with prompts, as images and as clips of FRAMES frames."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    images, clips = [], []
    for i in range(4):
        for name in ("w", "l"):
            Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / f"{name}{i}.png")
        prompt = ["a hand waving", "two hands", "a fist", ""][i]
        images.append({"winner": f"w{i}.png", "loser": f"l{i}.png", "prompt": prompt})
        clips.append({"winner": _video(root / f"cw{i}.mp4", 2 * i), "loser": _video(root / f"cl{i}.mp4", 2 * i + 1),
                      "prompt": prompt})
    for name, rows in (("images", images), ("clips", clips)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"images": root / "images.jsonl", "clips": root / "clips.jsonl"}


def _overrides(family, pipelines, manifests):
    data = manifests["clips"] if family in VIDEO else manifests["images"]
    extra = [f"data.num_frames={FRAMES}"] if family in VIDEO else []
    return [f"model={MODEL.get(family, family)}", f"model.path={pipelines[family]}", f"data.path={data}", *extra]


def _generate(pipe, family):
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

    summary = train(_config(f"objective={objective}", *_overrides(family, pipelines, manifests)), tmp_path / "run")
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
    original = _generate(pipe, family)
    pipe.load_lora_weights(final)
    adapted = _generate(pipe, family)
    assert (adapted - original).abs().max() > 1e-6  # the adapter changes the output
    pipe.disable_lora()
    assert torch.equal(_generate(pipe, family), original)  # adapters off: exactly the original pipeline

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


def _encoded(family, pipelines, manifests, tmp_path, monkeypatch):
    """(the cache of ``family``'s manifest as training reads it, the rows decoded to pixels, the config)."""
    import json

    from prefopt.data import build_dataset
    from prefopt.models import build_model

    cfg = _config("objective=dpo", *_overrides(family, pipelines, manifests))
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path / "cache"))
    encoded = build_dataset(cfg.data, paired=True, model=build_model(cfg.model))
    manifest = Path(cfg.data.path)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return encoded, rows, manifest.parent


def test_cached_latents_are_the_pipelines_own_encoding(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    """The cache holds vae.encode(x).latent_dist.mean * scaling_factor and the text encoder's states."""
    from diffusers import DiffusionPipeline
    from user_data import decoded

    encoded, rows, root = _encoded("sd15", pipelines, manifests, tmp_path, monkeypatch)
    again, _, _ = _encoded("sd15", pipelines, manifests, tmp_path, monkeypatch)
    assert len(list((tmp_path / "cache" / "latents").iterdir())) == 1 and torch.equal(encoded[2]["winner"], again[2]["winner"])
    pipe = DiffusionPipeline.from_pretrained(pipelines["sd15"])
    with torch.no_grad():
        for row in (0, 3):
            image = decoded(root / rows[row]["loser"], SIZE).unsqueeze(0)
            latent = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
            torch.testing.assert_close(encoded[row]["loser"].unsqueeze(0), latent)
            ids = pipe.tokenizer([rows[row].get("prompt", "")], padding="max_length",
                                 max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
            torch.testing.assert_close(encoded[row]["cond"]["encoder_hidden_states"], pipe.text_encoder(ids)[0][0])
    assert encoded.sample_shape == (4, SIZE // 2, SIZE // 2)
    item = encoded[1]
    assert set(item) >= {"winner", "loser", "cond"} and item["cond"]["encoder_hidden_states"].shape[-1] == 32


def test_sdxl_conditions_on_pooled_text_and_size(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    encoded, _, _ = _encoded("sdxl", pipelines, manifests, tmp_path, monkeypatch)
    assert len(encoded) == 4
    for row in range(4):
        cond = encoded[row]["cond"]
        assert cond["encoder_hidden_states"].shape == (16, 64)  # both encoders' states, concatenated
        assert cond["added_cond_kwargs"]["text_embeds"].shape == (32,)
        assert cond["added_cond_kwargs"]["time_ids"].tolist() == [SIZE, SIZE, 0, 0, SIZE, SIZE]  # size, crop, target


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

    overrides = {"images_to_video": [*_overrides("wan", pipelines, manifests)[:2], f"data.path={manifests['images']}"],
                 "no_path": ["model=sd15", f"data.path={manifests['images']}"],
                 "not_a_pipeline": ["model=sd15", f"model.path={pipelines['sd15'] / 'unet'}",
                                    f"data.path={manifests['images']}"],
                 "i2v_family_t2v_folder": ["model=wan_i2v", f"model.path={pipelines['wan']}",
                                           f"data.path={manifests['clips']}", f"data.num_frames={FRAMES}"],
                 "learned_positions": [*_overrides("cogvideox_i2v", pipelines, manifests), "data.image_size=48"]}
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
        train(_config("objective=dpo", *overrides[case]), tmp_path / "run")
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
    summary = train(_config("objective=dpo", "trainer.mixed_precision=bf16", *_overrides("sd15", pipelines, manifests)),
                    tmp_path / "run")
    assert seen["base"] == {torch.bfloat16} and seen["lora"] == {torch.float32}
    assert np.isfinite(summary["loss"])
    weights = load_file(str(tmp_path / "run" / "final" / "pytorch_lora_weights.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_gradient_checkpointing_changes_memory_not_results(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    runs = {}
    for flag in (True, False):
        seen = _spy_on_the_model(monkeypatch)
        train(_config("objective=dpo", f"model.gradient_checkpointing={flag}", *_overrides("sd15", pipelines, manifests)),
              tmp_path / str(flag))
        assert seen["checkpointing"] is flag
        runs[flag] = load_file(str(tmp_path / str(flag) / "final" / "pytorch_lora_weights.safetensors"))
        monkeypatch.undo()
    for key in runs[True]:
        torch.testing.assert_close(runs[True][key], runs[False][key], rtol=0, atol=1e-6)


def _prompt_cond(family, pipe, prompt):
    """The pipeline's own text encoding of ``prompt``, as its sampler conditions on it."""
    if family == "sd3":
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, prompt, prompt, do_classifier_free_guidance=False)
        return {"encoder_hidden_states": embeds[0], "pooled_projections": pooled[0]}
    if family == "flux":
        embeds, pooled, _ = pipe.encode_prompt(prompt, prompt)
        return {"encoder_hidden_states": embeds[0], "pooled_projections": pooled[0]}
    length = 512 if family == "wan_i2v" else 226  # what each pipeline's __call__ passes
    return {"encoder_hidden_states": pipe.encode_prompt(prompt, do_classifier_free_guidance=False,
                                                        max_sequence_length=length)[0][0]}


def _latent(family, vae, pixels):
    """``pixels`` (1, 3, [T,] H, W) as the family's scaled latent, from the VAE's posterior mean."""
    mean = vae.encode(pixels).latent_dist.mean
    if family in ("sd3", "flux"):
        return (mean - vae.config.shift_factor) * vae.config.scaling_factor
    if family == "wan_i2v":
        shape = (1, -1, 1, 1, 1)
        return (mean - torch.tensor(vae.config.latents_mean).view(shape)) / torch.tensor(vae.config.latents_std).view(shape)
    return mean * vae.config.scaling_factor


@pytest.mark.parametrize("family", ["sd3", "flux", "cogvideox", "cogvideox_i2v", "wan_i2v"])
def test_new_families_cache_the_pipelines_own_latents_and_conditions(family, pipelines, manifests, model_cache,
                                                                     tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline
    from user_data import decoded, decoded_clip

    encoded, rows, root = _encoded(family, pipelines, manifests, tmp_path, monkeypatch)
    pipe = DiffusionPipeline.from_pretrained(pipelines[family])
    read = (lambda p: decoded_clip(p, SIZE, FRAMES)) if family in VIDEO else (lambda p: decoded(p, SIZE))
    with torch.no_grad():
        for row in (0, 2):
            loser, winner = read(root / rows[row]["loser"])[None], read(root / rows[row]["winner"])[None]
            torch.testing.assert_close(encoded[row]["loser"][None], _latent(family, pipe.vae, loser), rtol=1e-4, atol=1e-5)
            cond = encoded[row]["cond"]
            for key, value in _prompt_cond(family, pipe, rows[row]["prompt"]).items():
                torch.testing.assert_close(cond[key], value, rtol=1e-4, atol=1e-5)
            first = winner[:, :, :1]  # the pair's reference image: the winner's first frame
            if family == "cogvideox_i2v":
                torch.testing.assert_close(cond["image_latents"][None], _latent(family, pipe.vae, first), rtol=1e-4, atol=1e-5)
            if family == "wan_i2v":  # latents of the image then black frames (the frame mask is made at the call)
                clip = torch.cat([first, torch.zeros_like(winner[:, :, 1:])], dim=2)
                torch.testing.assert_close(cond["image_latents"], _latent(family, pipe.vae, clip)[0], rtol=1e-4, atol=1e-5)
                image = ((first[0, :, 0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
                pixels = pipe.image_processor(images=[image], return_tensors="pt").pixel_values
                states = pipe.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][0]
                torch.testing.assert_close(cond["encoder_hidden_states_image"], states, rtol=1e-4, atol=1e-5)
    assert ("image_latents" in encoded[0]["cond"]) == (family in I2V)


def test_flux_is_called_on_its_own_packed_tokens(pipelines, model_cache):
    """The hooked FLUX transformer, called as prefopt calls every denoiser, equals the transformer
    called by hand on 2x2-packed tokens with their ids, timestep / 1000 and the guidance embedding."""
    from diffusers import FluxTransformer2DModel

    from prefopt.models.calls import install

    plain = FluxTransformer2DModel.from_pretrained(pipelines["flux"], subfolder="transformer")
    hooked = install("flux", FluxTransformer2DModel.from_pretrained(pipelines["flux"], subfolder="transformer"), 3.5)
    generator = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, 8, 6, generator=generator), torch.randn(2, 7, 32, generator=generator)
    pooled, t = torch.randn(2, 32, generator=generator), torch.tensor([250.0, 900.0])
    with torch.no_grad():
        out = hooked(x, timestep=t, encoder_hidden_states=text, pooled_projections=pooled, return_dict=False)[0]
        tokens = x.view(2, 4, 4, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 12, 16)  # (b, h/2 * w/2, c * 2 * 2)
        rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(3.0), indexing="ij")
        ids = torch.stack([torch.zeros(12), rows.flatten(), cols.flatten()], dim=1)
        raw = plain(tokens, timestep=t / 1000, encoder_hidden_states=text, pooled_projections=pooled,
                    img_ids=ids, txt_ids=torch.zeros(7, 3), guidance=torch.full((2,), 3.5), return_dict=False)[0]
    expected = raw.view(2, 4, 3, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(2, 4, 8, 6)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("family", ["cogvideox", "cogvideox_i2v", "wan_i2v"])
def test_the_hooked_call_is_the_pipelines_own_call(family, pipelines, model_cache):
    """One sampling step of the pipeline, its transformer's inputs and output recorded; the same
    transformer with prefopt's hooks, called as prefopt calls it on those latents and conditions,
    gives the pipeline's prediction (layout, rotary embeddings, reference-image channels)."""
    from diffusers import DiffusionPipeline

    from prefopt.models.calls import install

    pipe = DiffusionPipeline.from_pretrained(pipelines[family])
    seen = {}

    def record(module, args, kwargs, output=None):  # the first call's inputs and prediction
        seen.setdefault("in" if output is None else "out", kwargs if output is None else output[0])

    hooks = [pipe.transformer.register_forward_pre_hook(record, with_kwargs=True),
             pipe.transformer.register_forward_hook(record, with_kwargs=True)]
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    with torch.no_grad():
        pipe(prompt="a hand waving", height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=1, guidance_scale=1.0,
             output_type="pt", generator=torch.Generator().manual_seed(0), **({"image": image} if family in I2V else {}))
    for hook in hooks:
        hook.remove()
    kwargs, channels = seen["in"], pipe.transformer.config.out_channels
    hooked = install(MODEL.get(family, family), pipe.transformer)
    cond = {"encoder_hidden_states": kwargs["encoder_hidden_states"]}
    if family.startswith("cogvideox"):
        hidden = kwargs["hidden_states"]  # (B, T, C [+ C], H, W): frames first
        x, expected = hidden[:, :, :channels].transpose(1, 2), seen["out"].transpose(1, 2)
        if family in I2V:
            reference = hidden[:, :, channels:]
            assert reference[:, 1:].abs().max() == 0  # the pipeline's zero frames after the image, as the hook pads
            cond["image_latents"] = reference[:, :1].transpose(1, 2)
    else:
        hidden = kwargs["hidden_states"]  # (B, C + 4 + C, T, H, W): latents, frame mask, image latents
        x, expected = hidden[:, :channels], seen["out"]
        cond.update(image_latents=hidden[:, channels + 4:], encoder_hidden_states_image=kwargs["encoder_hidden_states_image"])
    with torch.no_grad():
        out = hooked(x, timestep=kwargs["timestep"], return_dict=False, **cond)[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_a_rows_image_column_is_its_reference_image(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    """I2V rows with an ``image`` (the picture their clips were made from) condition on it, not on the winner's frame."""
    from diffusers import DiffusionPipeline
    from user_data import decoded

    root = manifests["clips"].parent
    rows = [{**row, "image": f"w{i}.png"} for i, row in enumerate(json.loads(line) for line in
                                                                   manifests["clips"].read_text().splitlines())]
    manifest = root / "clips_with_images.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    from prefopt.data import build_dataset
    from prefopt.models import build_model

    cfg = _config("objective=dpo", "model=cogvideox", f"model.path={pipelines['cogvideox_i2v']}",
                  f"data.path={manifest}", f"data.num_frames={FRAMES}")
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path / "cache"))
    encoded = build_dataset(cfg.data, paired=True, model=build_model(cfg.model))
    vae = DiffusionPipeline.from_pretrained(pipelines["cogvideox_i2v"]).vae
    with torch.no_grad():
        for row in (0, 3):
            image = decoded(root / rows[row]["image"], SIZE)[None, :, None]
            expected = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
            torch.testing.assert_close(encoded[row]["cond"]["image_latents"][None], expected, rtol=1e-4, atol=1e-5)
