"""Hand-aware local optimization: real hand masks from mediapipe (offline), mask geometry, the
latent grid, the region weights and their plumbing through the core and the training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prefopt.core import NoiseProcess, per_sample_error, preference_errors
from prefopt.data import PreferenceDataset
from prefopt.errors import ConfigError
from prefopt.modules.hand_aware import HandAware
from prefopt.modules.hand_aware.cache import mask_of_file
from prefopt.modules.hand_aware.grid import latent_frames, region_weights, to_latent_grid
from prefopt.modules.hand_aware.masker import HandMasker, hull_mask
from prefopt.modules.hand_aware.sources import hand_masks

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "hand_emoji.png"
CONF = str(Path(__file__).resolve().parents[2] / "conf")


def emoji(background=(255, 255, 255)) -> tuple[np.ndarray, np.ndarray]:
    """(RGB (512, 512, 3) uint8 of the hand over ``background``, its alpha > 0.5 as a bool mask)."""
    glyph = Image.open(FIXTURE)
    canvas = Image.new("RGBA", glyph.size, (*background, 255))
    canvas.alpha_composite(glyph)
    return np.array(canvas.convert("RGB")), np.asarray(glyph)[..., 3] > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def masker():
    with HandMasker() as m:
        yield m


# ---- mediapipe on a real hand picture ------------------------------------------------------------

def test_mask_of_a_real_hand_covers_the_hand_and_little_else(masker):
    rgb, alpha = emoji()
    hands = masker.detect(rgb)
    assert len(hands) == 1 and hands[0].score > 0.8
    assert hands[0].landmarks.shape == (21, 2)
    mask = masker(rgb)
    assert mask.shape == alpha.shape and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1
    hand = mask > 0.5
    assert iou(hand, alpha) >= 0.5
    assert (hand & alpha).sum() / alpha.sum() >= 0.9  # covers the hand


def test_no_hand_gives_an_all_zero_mask(masker):
    blank = np.full((256, 256, 3), 200, np.uint8)
    assert masker.detect(blank) == []
    assert not masker(blank).any()


def test_video_frames_are_tracked(masker):
    rgb, alpha = emoji()
    shifts = [0, 8, 16, 24]
    frames = [np.roll(rgb, s, axis=1) for s in shifts]
    masks, hands = masker.video(frames)
    assert masks.shape == (4, 512, 512)
    assert all(len(h) == 1 for h in hands)
    for mask, s in zip(masks, shifts, strict=True):
        assert iou(mask > 0.5, np.roll(alpha, s, axis=1)) >= 0.5


# ---- geometry with synthetic landmarks -------------------------------------------------------------

def _grid(height, width):
    y, x = np.mgrid[0:height, 0:width]
    return x, y


def test_hull_of_a_square_is_the_filled_square():
    corners = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], np.float32)
    inner = np.array([[15, 20], [20, 12], [25, 25]], np.float32)  # inside: do not change the hull
    mask = hull_mask([np.concatenate([corners, inner])], 48, 40, margin=0, feather=0)
    x, y = _grid(48, 40)
    expected = (x >= 10) & (x <= 30) & (y >= 10) & (y <= 30)
    assert mask.shape == (48, 40)
    np.testing.assert_array_equal(mask, expected.astype(np.float32))


def test_hull_of_a_triangle_and_the_union_of_two_hands():
    triangle = np.array([[2, 2], [22, 2], [2, 22], [6, 6]], np.float32)
    square = np.array([[40, 40], [50, 40], [50, 50], [40, 50]], np.float32)
    mask = hull_mask([triangle, square], 64, 64, margin=0, feather=0)
    x, y = _grid(64, 64)
    inside_triangle = (x >= 2) & (y >= 2) & (x + y <= 24)
    inside_square = (x >= 40) & (x <= 50) & (y >= 40) & (y <= 50)
    # the hypotenuse is rasterized: pixels off it by a pixel or more are decided
    decided = np.abs(x + y - 24) >= 1
    np.testing.assert_array_equal(mask[decided] > 0, (inside_triangle | inside_square)[decided])


def test_dilation_grows_by_margin_times_hand_size():
    square = np.array([[20, 20], [40, 20], [40, 40], [20, 40]], np.float32)  # size 20
    mask = hull_mask([square], 64, 64, margin=0.25, feather=0)  # radius 5
    x, y = _grid(64, 64)
    distance = np.hypot(np.clip(np.maximum(20 - x, x - 40), 0, None), np.clip(np.maximum(20 - y, y - 40), 0, None))
    assert mask[distance <= 4.5].all()  # everything within the radius (less a rasterization half-pixel)
    assert not mask[distance > 5.5].any()  # nothing beyond it: the corners are rounded
    assert mask[30, 15] == 1 and mask[30, 14] == 0  # exactly 5 px out along an axis


def test_feathering_keeps_the_core_and_the_mass_and_softens_the_edge():
    square = np.array([[20, 20], [44, 20], [44, 44], [20, 44]], np.float32)
    hard = hull_mask([square], 64, 64, margin=0, feather=0)
    soft = hull_mask([square], 64, 64, margin=0, feather=0.05)  # sigma 1.2 px
    assert soft[32, 32] == pytest.approx(1.0, abs=1e-6)
    assert soft.sum() == pytest.approx(hard.sum(), rel=1e-3)
    assert 0.3 < soft[32, 20] < 0.7  # the hull's edge
    assert 0 < soft[32, 18] < 0.2 and soft[32, 10] == 0


# ---- the latent grid -------------------------------------------------------------------------------

def test_image_masks_are_area_pooled_and_dilated_on_the_latent_grid():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    mask[..., 5, 6] = 1  # one pixel of a 4x4 cell
    grid = to_latent_grid(mask, (2, 2))
    torch.testing.assert_close(grid[0, 0], torch.tensor([[1.0, 0.0], [0.0, 1 / 16]]))
    one = torch.zeros(1, 1, 5, 5)
    one[..., 2, 2] = 0.5
    dilated = to_latent_grid(one, (5, 5), dilate=1)
    expected = torch.zeros(5, 5)
    expected[1:4, 1:4] = 0.5
    torch.testing.assert_close(dilated[0, 0], expected)


def test_video_masks_follow_the_causal_temporal_compression():
    frames = torch.arange(9, dtype=torch.float32).div(10).view(1, 1, 9, 1, 1).expand(2, 1, 9, 8, 8)
    grid = to_latent_grid(frames, (4, 4), temporal_compression=4)
    assert grid.shape == (2, 1, 3, 4, 4)
    # latent frame 0 = frame 0; frame 1 = mean of frames 1..4; frame 2 = mean of frames 5..8
    for t, value in enumerate([0.0, 0.25, 0.65]):
        torch.testing.assert_close(grid[:, :, t], torch.full((2, 1, 4, 4), value))
    assert latent_frames(9, 4) == 3 and latent_frames(5, 1) == 5
    with pytest.raises(ConfigError, match="8 frames do not fit a causal VAE with temporal compression 4"):
        to_latent_grid(torch.zeros(1, 1, 8, 8, 8), (4, 4), temporal_compression=4)
    spot = torch.zeros(1, 1, 2, 4, 4)
    spot[0, 0, 1, 1, 1] = 1
    dilated = to_latent_grid(spot, (4, 4), dilate=1)
    assert dilated[0, 0, 0].sum() == 0  # dilation is spatial only
    assert dilated[0, 0, 1, :3, :3].eq(1).all() and dilated[0, 0, 1].sum() == 9


def test_region_weights_and_the_reference_frame():
    mask = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(region_weights(mask, 10.0).flatten(), torch.tensor([1.0, 5.5, 10.0]))
    torch.testing.assert_close(region_weights(mask, 10.0, reference_frame=True).flatten(), torch.tensor([1.0, 5.5, 10.0]))
    ones = torch.ones(1, 1, 3, 1, 1)
    torch.testing.assert_close(region_weights(ones, 10.0, reference_frame=True).flatten(), torch.tensor([1.0, 10.0, 10.0]))
    with pytest.raises(ConfigError, match="reference_frame applies to video"):
        region_weights(torch.ones(1, 1, 2, 2), 10.0, reference_frame=True)


def test_weighted_error_matches_the_formula_written_out():
    torch.manual_seed(0)
    prediction, target = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1  # top half is hand
    squared = (prediction - target) ** 2
    inside, outside = squared[:, :, :2].sum(dim=(1, 2, 3)), squared[:, :, 2:].sum(dim=(1, 2, 3))
    expected = (10 * inside + outside) / (10 * 24 + 24)
    torch.testing.assert_close(per_sample_error(prediction, target, region_weights(mask, 10.0)), expected)


def test_a_zero_mask_reproduces_the_unweighted_loss_exactly(model_cache):
    from hydra import compose, initialize_config_dir

    from prefopt.cli import to_config
    from prefopt.models import build_model

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        bundle = build_model(to_config(compose("config", overrides=["model=tiny"])).model)
    process = NoiseProcess(bundle.scheduler)
    x0 = torch.randn(4, 3, 16, 16)
    weights = region_weights(torch.zeros(4, 1, 16, 16), 10.0)
    plain = preference_errors(bundle.denoiser, None, process, x0, generator=torch.Generator().manual_seed(1))
    weighted = preference_errors(bundle.denoiser, None, process, x0, weights=weights,
                                 generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain.policy_err, weighted.policy_err)


# ---- config, sources and cache --------------------------------------------------------------------

@pytest.mark.parametrize("block, message", [
    ({"lambda": 0.5}, "hand_aware.lambda must be >= 1"),
    ({"lambda": "ten"}, "hand_aware.lambda must be a number"),
    ({"dilate": -1}, "hand_aware.dilate must be a whole number"),
    ({"source": "sam"}, "hand_aware.source must be one of"),
    ({"enabled": "yes"}, "hand_aware.enabled must be true or false"),
    ({"enabled": True, "source": "file"}, "hand_aware.path: source=file needs"),
    ({"lamda": 5}, "hand_aware.lamda: unknown key"),
])
def test_bad_hand_aware_blocks_name_the_key(block, message):
    with pytest.raises(ConfigError, match=message):
        HandAware.from_block(block)


def test_sources_renderer_file_and_their_errors(tmp_path):
    from safetensors.torch import save_file

    images = torch.rand(3, 3, 8, 8) * 2 - 1
    plain = PreferenceDataset(images, name="data=plain")
    with pytest.raises(ConfigError, match="source=renderer: data=plain carries no hand masks"):
        hand_masks(plain, HandAware(enabled=True), tmp_path)
    pixel_masks = torch.zeros(3, 1, 16, 16)
    pixel_masks[:, :, :8] = 1
    path = tmp_path / "masks.safetensors"
    save_file({"mask_w": pixel_masks}, path)
    masks = hand_masks(plain, HandAware(enabled=True, source="file", path=str(path), dilate=0), tmp_path)
    expected = torch.zeros(3, 1, 8, 8)
    expected[:, :, :4] = 1
    torch.testing.assert_close(masks["mask_w"], expected)  # pooled onto the 8x8 sample grid
    save_file({"mask_w": pixel_masks[:2]}, path)
    with pytest.raises(ConfigError, match=f"{path}: mask_w has 2 rows, the data has 3"):
        hand_masks(plain, HandAware(enabled=True, source="file", path=str(path)), tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        hand_masks(plain, HandAware(enabled=True, source="file", path=str(tmp_path / "none.safetensors")), tmp_path)


def test_mediapipe_source_on_rgb_samples_is_cached(tmp_path):
    rgb, alpha = emoji()
    image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    dataset = PreferenceDataset(torch.stack([image, torch.full_like(image, 0.5)]), name="data=pictures")
    hand_aware = HandAware(enabled=True, source="mediapipe")
    masks = hand_masks(dataset, hand_aware, tmp_path)["mask_w"]
    assert masks.shape == (2, 1, 512, 512)
    assert iou(masks[0, 0].numpy() > 0.5, alpha) >= 0.5 and masks[1].sum() == 0
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = hand_masks(dataset, hand_aware, tmp_path)["mask_w"]
    assert torch.equal(masks, again)
    latents = PreferenceDataset(torch.zeros(1, 4, 8, 8), name="data=latents")
    with pytest.raises(ConfigError, match="source=mediapipe needs RGB samples, got 4 channels"):
        hand_masks(latents, hand_aware, tmp_path)


def test_masks_of_files_are_cached_beside_the_data_by_content(tmp_path, monkeypatch):
    import cv2

    picture = tmp_path / "data" / "hand.png"
    picture.parent.mkdir()
    rgb, alpha = emoji()
    Image.fromarray(rgb).save(picture)
    with HandMasker() as masker:
        mask = mask_of_file(picture, masker)
        stored = list((picture.parent / ".hand_masks").glob("*.npz"))
        assert len(stored) == 1 and iou(mask > 0.5, alpha) >= 0.5
        monkeypatch.setattr(HandMasker, "mask", lambda *a, **k: pytest.fail("the cached mask was recomputed"))
        np.testing.assert_array_equal(mask_of_file(picture, masker), mask)
        monkeypatch.undo()
        video = tmp_path / "data" / "clip.mp4"
        small = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 8, (256, 256))
        for shift in (0, 4, 8):
            writer.write(cv2.cvtColor(np.roll(small, shift, axis=1), cv2.COLOR_RGB2BGR))
        writer.release()
        clip = mask_of_file(video, masker)
        assert clip.shape == (3, 256, 256) and all((m > 0.5).sum() > 1000 for m in clip)
        broken = tmp_path / "data" / "broken.png"
        broken.write_bytes(b"not a png")
        with pytest.raises(ConfigError, match=f"{broken}: not a readable image"):
            mask_of_file(broken, masker)
        with pytest.raises(ConfigError, match="missing.png: no such file"):
            mask_of_file(tmp_path / "missing.png", masker)


def test_hand_quality_of_real_pictures(masker):
    from prefopt.rewards.mediapipe_hands import hand_quality

    rgb, _ = emoji()
    hand = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    quality = hand_quality(torch.stack([hand, torch.full_like(hand, 0.6)]), masker=masker)
    assert quality.landmarks.tolist() == [21, 0]
    assert quality.confidence[0] > 0.8 and quality.confidence[1] == 0
    assert quality.score[0] == pytest.approx(float(quality.confidence[0])) and quality.score[1] == 0
