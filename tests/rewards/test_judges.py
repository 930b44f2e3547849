"""The learned judges on tiny random-init CLIP and BLIP folders saved with ``save_pretrained``: each
raw score against its formula computed here from the transformers model itself (pixels from the
folder's own image processor, the MLP heads as plain matrix products), the [0, 1] maps, clips as the
mean of their frames, one-line errors for a missing or incomplete folder, and ``prefopt.score``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tiny_judges
import torch
from commands import compose
from commands import rows as read_rows
from PIL import Image
from safetensors.torch import load_file, save_file

from prefopt.errors import ConfigError
from prefopt.models.tiny_pipelines import tokenizer
from prefopt.rewards import callables
from prefopt.rewards.judges import Aesthetic, CLIPScore, HPSv2, ImageReward, PickScore

PROMPTS = ["a hand", "two hands waving", "", "an open palm with five fingers"]
LAYERS = {0: (None, 1024), 2: (1024, 128), 4: (128, 64), 6: (64, 16), 7: (16, 1)}  # the released MLP, input width aside
TINY, VISION = tiny_judges.TINY, tiny_judges.VISION


def _save_head(path, inputs: int, last_bias: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (fan_in, fan_out) in LAYERS.items():
        fan_in = fan_in or inputs
        state[f"layers.{index}.weight"] = torch.randn(fan_out, fan_in, generator=generator) / fan_in ** 0.5
        state[f"layers.{index}.bias"] = torch.randn(fan_out, generator=generator) * 0.1
    state["layers.7.bias"] += last_bias
    save_file(state, path)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tiny_judges.clip_folder(tmp_path_factory.mktemp("judges") / "clip")
    _save_head(folder / "aesthetic_mlp.safetensors", inputs=16, last_bias=5.0, seed=1)
    return folder


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    folder = tmp_path_factory.mktemp("judges") / "blip"
    torch.manual_seed(0)
    text = dict(TINY, vocab_size=514, encoder_hidden_size=32, max_position_embeddings=64, bos_token_id=512,
                pad_token_id=513, sep_token_id=513, initializer_range=0.2)  # 0.02: the [CLS] state barely sees the image
    config = BlipConfig(text_config=text, vision_config=dict(VISION, initializer_range=0.2), projection_dim=16)
    BlipForImageTextRetrieval(config).save_pretrained(folder)
    tokenizer(max_tokens=64).save_pretrained(folder)
    _save_head(folder / "imagereward_mlp.safetensors", inputs=32, last_bias=0.0, seed=2)
    return folder


def _images(count: int, height: int = 32, width: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8-bit images (N, 3, H, W) and the same as samples in [-1, 1]."""
    pixels = torch.randint(0, 256, (count, 3, height, width), generator=torch.Generator().manual_seed(seed))
    return pixels.to(torch.uint8), pixels.float() / 127.5 - 1


def _clip_cosine(folder, pixels: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, float]:
    """cos of the unit image and text embeddings (pixels through the folder's own processor, text
    padded to the tokenizer's full length), and exp(logit_scale)."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    inputs = AutoImageProcessor.from_pretrained(folder)(images=list(pixels), return_tensors="pt")
    text = AutoTokenizer.from_pretrained(folder)(prompts, padding="max_length", max_length=16, truncation=True,
                                                 return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        words = model.get_text_features(input_ids=text.input_ids, attention_mask=text.attention_mask).pooler_output
    image = image / image.norm(dim=-1, keepdim=True)
    words = words / words.norm(dim=-1, keepdim=True)
    return (image * words).sum(dim=-1), model.logit_scale.exp().item()


def _mlp(path, features: torch.Tensor) -> torch.Tensor:
    """The head as matrix products, layer by layer."""
    state = load_file(path)
    for index in LAYERS:
        features = features @ state[f"layers.{index}.weight"].T + state[f"layers.{index}.bias"]
    return features[:, 0]


def test_clip_judges_are_their_cosine_formulas(clip_folder):
    pixels, samples = _images(4)
    cosine, logit_scale = _clip_cosine(clip_folder, pixels, PROMPTS)
    pick, hps, clip = (judge(clip_folder, device="cpu") for judge in (PickScore, HPSv2, CLIPScore))
    torch.testing.assert_close(pick.raw(samples, PROMPTS), logit_scale * cosine, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pick(samples, PROMPTS), (cosine + 1) / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hps.raw(samples, PROMPTS), cosine, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hps(samples, PROMPTS), (cosine + 1) / 2, rtol=1e-4, atol=1e-5)
    expected = torch.where(cosine > 0, 100 * cosine, torch.zeros_like(cosine))
    torch.testing.assert_close(clip.raw(samples, PROMPTS), expected, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(clip(samples, PROMPTS), expected / 100, rtol=1e-4, atol=1e-5)


def test_larger_images_are_resized_and_cropped_like_the_folders_processor(clip_folder):
    pixels, samples = _images(4, height=40, width=56, seed=3)
    cosine, _ = _clip_cosine(clip_folder, pixels, PROMPTS)
    torch.testing.assert_close(HPSv2(clip_folder, device="cpu").raw(samples, PROMPTS), cosine, rtol=0, atol=0.005)


def test_aesthetic_is_the_mlp_of_the_unit_image_embedding(clip_folder):
    from transformers import AutoImageProcessor, CLIPModel

    pixels, samples = _images(4, seed=4)
    model = CLIPModel.from_pretrained(clip_folder).eval()
    with torch.no_grad():
        inputs = AutoImageProcessor.from_pretrained(clip_folder)(images=list(pixels), return_tensors="pt")
        embedding = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        expected = _mlp(clip_folder / "aesthetic_mlp.safetensors", embedding / embedding.norm(dim=-1, keepdim=True))
    judge = Aesthetic(clip_folder, device="cpu")
    torch.testing.assert_close(judge.raw(samples, PROMPTS), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(judge(samples, PROMPTS), ((expected - 1) / 9).clamp(0, 1), rtol=1e-4, atol=1e-5)


def test_imagereward_is_the_standardized_mlp_of_the_cls_state(blip_folder):
    from transformers import AutoTokenizer, BlipForImageTextRetrieval

    _, samples = _images(4, seed=5)
    blip = BlipForImageTextRetrieval.from_pretrained(blip_folder).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    text = AutoTokenizer.from_pretrained(blip_folder)(PROMPTS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        tokens = blip.vision_model(pixel_values=((samples + 1) / 2 - mean) / std).last_hidden_state
        cls = blip.text_encoder(input_ids=text.input_ids, attention_mask=text.attention_mask,
                                encoder_hidden_states=tokens).last_hidden_state[:, 0]
    expected = (_mlp(blip_folder / "imagereward_mlp.safetensors", cls) - 0.16717362830052426) / 1.0333394966054072
    judge = ImageReward(blip_folder, device="cpu")
    torch.testing.assert_close(judge.raw(samples, PROMPTS), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(judge(samples, PROMPTS), 1 / (1 + torch.exp(-expected)), rtol=1e-4, atol=1e-5)


def test_clips_are_the_mean_of_their_frames_in_batches(blip_folder):
    _, frames = _images(6, seed=6)
    judge = ImageReward(blip_folder, batch_size=4, device="cpu")
    prompts = ["a hand", "a fist", "a palm"]
    per_frame = judge.raw(frames, prompts * 2).view(2, 3)  # row t: frame t of the clips
    clips = torch.stack([frames[:3], frames[3:]], dim=2)  # (3, 3, T=2, H, W): clip k has frames k and k + 3
    assert per_frame.std() > 0.01
    torch.testing.assert_close(judge.raw(clips, prompts), per_frame.mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(judge(clips, prompts), torch.sigmoid(per_frame).mean(dim=0), rtol=1e-4, atol=1e-5)


def test_unit_maps_are_monotone_onto_zero_one(clip_folder, blip_folder):
    raw = torch.linspace(-1000, 1000, 20001)
    for judge in (PickScore(clip_folder, device="cpu"), HPSv2(clip_folder, device="cpu"),
                  CLIPScore(clip_folder, device="cpu"), Aesthetic(clip_folder, device="cpu"),
                  ImageReward(blip_folder, device="cpu")):
        unit = judge.unit(raw)
        assert unit.min() >= 0 and unit.max() <= 1 and (unit.diff() >= 0).all(), type(judge).__name__
        assert unit[0] == 0 and unit[-1] == 1, type(judge).__name__


def _one_line_on_reward_path(path) -> str:
    with pytest.raises(ConfigError) as error:
        Aesthetic(path, device="cpu")
    message = str(error.value)
    assert "\n" not in message and message.startswith("reward.path: ")
    return message


@pytest.mark.parametrize("path", [None, "???"])
def test_an_unset_path_is_one_line(path):
    assert _one_line_on_reward_path(path).startswith("reward.path: not set (Aesthetic needs a local folder of ")


def test_a_bad_device_or_batch_size_is_one_line(clip_folder):
    with pytest.raises(ConfigError, match=r"^reward.device: 'gpu0' is not a torch device"):
        CLIPScore(clip_folder, device="gpu0")
    with pytest.raises(ConfigError, match=r"^reward.batch_size: must be >= 1, got 0$"):
        CLIPScore(clip_folder, batch_size=0)


@pytest.mark.parametrize("case", ["nowhere", "no:preprocessor_config.json", "no:model.safetensors",
                                  "no:aesthetic_mlp.safetensors", "bad:model.safetensors",
                                  "bad:aesthetic_mlp.safetensors"])
def test_a_missing_or_incomplete_folder_is_one_line_naming_it(case, clip_folder, tmp_path):
    path = tmp_path / "judge"
    if case != "nowhere":  # a copy with one file missing (no:) or corrupt (bad:)
        kind, name = case.split(":")
        shutil.copytree(clip_folder, path)
        if kind == "no":
            (path / name).unlink()
        else:
            (path / name).write_bytes(b"not safetensors")
    message = _one_line_on_reward_path(path)
    assert str(path) in message and (case == "nowhere" or name in message or "cannot load it" in message)


@pytest.mark.parametrize("option", ["pickscore", "hpsv2", "imagereward", "clip_score", "aesthetic"])
def test_each_reward_option_loads_its_judge_from_reward_path(option, tmp_path):
    config = compose("score", "manifest=m.jsonl", f"reward={option}", f"reward.path={tmp_path / 'nowhere'}").reward
    with pytest.raises(ConfigError, match=rf"^reward.path: {tmp_path / 'nowhere'} does not exist .+ needs a local"):
        callables.load(config)


def test_score_a_manifest_with_clip_score(clip_folder, tmp_path):
    from prefopt.score import score

    pixels, _ = _images(4, seed=7)
    (tmp_path / "samples").mkdir()
    lines = []
    for index, (image, prompt) in enumerate(zip(pixels, PROMPTS, strict=True)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "samples" / f"{index}.png")
        lines.append(json.dumps({"path": f"samples/{index}.png", "prompt": prompt}) + "\n")
    manifest = tmp_path / "samples.jsonl"
    manifest.write_text("".join(lines))
    counts = score(compose("score", f"manifest={manifest}", "reward=clip_score", f"reward.path={clip_folder}",
                           "reward.device=cpu", "reward.batch_size=3"))
    assert counts == {"rows": 4, "scored": 4, "skipped": 0}
    cosine, _ = _clip_cosine(clip_folder, pixels, PROMPTS)
    scores = np.array([row["score"] for row in read_rows(manifest)])
    np.testing.assert_allclose(scores, (cosine.clamp(min=0)).numpy(), rtol=1e-4, atol=1e-5)
    assert {row["reward"].split("#")[0] for row in read_rows(manifest)} == {"prefopt.rewards.judges.CLIPScore"}
