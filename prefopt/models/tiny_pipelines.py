"""Tiny random-init diffusers pipelines, one per model family, saved with ``save_pretrained``.

Tests and benchmarks train them through ``model=<family> model.path=<folder>``, the path a real
checkpoint takes. Every component is a diffusers or transformers class at a toy size (the
``get_dummy_components`` pattern of diffusers' own tests); the tokenizer is a byte-level CLIP
tokenizer with no merges, built in code, so nothing is downloaded.

    python -m prefopt.models.tiny_pipelines <family> <folder>
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

TEXT_DIM = 32
MAX_TOKENS = 16


def tokenizer(max_tokens: int = MAX_TOKENS):
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars])}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_tokens)


def _clip(with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=TEXT_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                            vocab_size=514, max_position_embeddings=MAX_TOKENS, bos_token_id=512, eos_token_id=513,
                            pad_token_id=513, projection_dim=TEXT_DIM, hidden_act="gelu")
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _vae_2d():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=8, sample_size=32)


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False)


def sd15():
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=[16, 32], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=TEXT_DIM,
                                attention_head_dim=8, norm_num_groups=8)
    return StableDiffusionPipeline(vae=_vae_2d(), text_encoder=_clip(), tokenizer=tokenizer(), unet=unet,
                                   scheduler=_ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def sdxl():
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=[16, 32], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
                                up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=2 * TEXT_DIM,
                                attention_head_dim=[2, 4], use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8, transformer_layers_per_block=[1, 1],
                                projection_class_embeddings_input_dim=6 * 8 + TEXT_DIM, norm_num_groups=8)
    return StableDiffusionXLPipeline(vae=_vae_2d(), text_encoder=_clip(), text_encoder_2=_clip(with_projection=True),
                                     tokenizer=tokenizer(), tokenizer_2=tokenizer(), unet=unet, scheduler=_ddim())


def wan():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=514, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8, pad_token_id=513,
                                               eos_token_id=513, decoder_start_token_id=0))
    return WanPipeline(tokenizer=tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))




def animatediff():
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=[16, 32], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], cross_attention_dim=TEXT_DIM,
                                attention_head_dim=8, norm_num_groups=8)
    adapter = MotionAdapter(block_out_channels=[16, 32], motion_layers_per_block=2, motion_norm_num_groups=8,
                            motion_num_attention_heads=2, motion_max_seq_length=32)
    return AnimateDiffPipeline(vae=_vae_2d(), text_encoder=_clip(), tokenizer=tokenizer(), unet=unet,
                               motion_adapter=adapter, scheduler=_ddim())


BUILDERS = {"sd15": sd15, "sdxl": sdxl, "animatediff": animatediff, "wan": wan}


def build(family: str, folder: Path, seed: int = 0) -> Path:
    """Write the tiny ``family`` pipeline (random init with ``seed``) to ``folder``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        pipe = BUILDERS[family]()
    pipe.save_pretrained(folder)
    return Path(folder)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in BUILDERS:
        sys.exit(f"usage: python -m prefopt.models.tiny_pipelines <{'|'.join(BUILDERS)}> <folder>")
    print(build(sys.argv[1], Path(sys.argv[2])))

