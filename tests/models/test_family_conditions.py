"""What the tiny families' encoders cache and how their denoisers are called, against the pipelines'
own computation: latents from the VAE, conditions from ``encode_prompt`` and the image encoder, the
reference image of image-to-video rows, FLUX's packed tokens, CogVideoX's and Wan I2V's calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_families import FRAMES, I2V, MODEL, SIZE, VIDEO, cached, family_config


def test_cached_latents_are_the_pipelines_own_encoding(pipelines, manifests, model_cache, tmp_path, monkeypatch):
    """The cache holds vae.encode(x).latent_dist.mean * scaling_factor and the text encoder's states."""
    from diffusers import DiffusionPipeline
    from user_data import decoded

    encoded, rows, root = cached("sd15", pipelines, manifests, tmp_path, monkeypatch)
    again, _, _ = cached("sd15", pipelines, manifests, tmp_path, monkeypatch)
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
    encoded, _, _ = cached("sdxl", pipelines, manifests, tmp_path, monkeypatch)
    assert len(encoded) == 4
    for row in range(4):
        cond = encoded[row]["cond"]
        assert cond["encoder_hidden_states"].shape == (16, 64)  # both encoders' states, concatenated
        assert cond["added_cond_kwargs"]["text_embeds"].shape == (32,)
        assert cond["added_cond_kwargs"]["time_ids"].tolist() == [SIZE, SIZE, 0, 0, SIZE, SIZE]  # size, crop, target


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

    encoded, rows, root = cached(family, pipelines, manifests, tmp_path, monkeypatch)
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

    cfg = family_config("objective=dpo", "model=cogvideox", f"model.path={pipelines['cogvideox_i2v']}",
                  f"data.path={manifest}", f"data.num_frames={FRAMES}")
    monkeypatch.setenv("PREFOPT_CACHE", str(tmp_path / "cache"))
    encoded = build_dataset(cfg.data, paired=True, model=build_model(cfg.model))
    vae = DiffusionPipeline.from_pretrained(pipelines["cogvideox_i2v"]).vae
    with torch.no_grad():
        for row in (0, 3):
            image = decoded(root / rows[row]["image"], SIZE)[None, :, None]
            expected = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
            torch.testing.assert_close(encoded[row]["cond"]["image_latents"][None], expected, rtol=1e-4, atol=1e-5)

