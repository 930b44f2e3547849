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


def _t5(d_model: int = TEXT_DIM):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=514, d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, pad_token_id=513, eos_token_id=513,
                                   decoder_start_token_id=0))


def _flow_vae(latent_channels: int = 4):
    """A 2-level AutoencoderKL with SD3/FLUX's latent shift and scale."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=8, sample_size=32, shift_factor=0.0609, scaling_factor=1.5035,
                         use_quant_conv=False, use_post_quant_conv=False)


def sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=2 * TEXT_DIM,
                                        caption_projection_dim=16, pooled_projection_dim=2 * TEXT_DIM, pos_embed_max_size=32)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=_flow_vae(), text_encoder=_clip(with_projection=True), tokenizer=tokenizer(),
                                    text_encoder_2=_clip(with_projection=True), tokenizer_2=tokenizer(),
                                    text_encoder_3=_t5(2 * TEXT_DIM), tokenizer_3=tokenizer())


def flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
                                         pooled_projection_dim=TEXT_DIM, guidance_embeds=True, axes_dims_rope=[4, 4, 8])
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_image_seq_len=16,
                                                max_image_seq_len=256, base_shift=0.5, max_shift=1.15)
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=_flow_vae(), text_encoder=_clip(),
                        tokenizer=tokenizer(), text_encoder_2=_t5(), tokenizer_2=tokenizer())


def _cogvideox(image_to_video: bool):
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    transformer = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=8 if image_to_video else 4,
                                              out_channels=4, time_embed_dim=4, text_embed_dim=TEXT_DIM, num_layers=2,
                                              sample_width=4, sample_height=4, sample_frames=5, patch_size=2,
                                              temporal_compression_ratio=4, max_text_seq_length=226,
                                              use_rotary_positional_embeddings=image_to_video,
                                              use_learned_positional_embeddings=image_to_video)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                                 down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
                                 block_out_channels=(8, 8, 8, 8), norm_num_groups=2, temporal_compression_ratio=4)
    scheduler = CogVideoXDDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                       timestep_spacing="trailing", snr_shift_scale=1.0, beta_schedule="scaled_linear",
                                       clip_sample=False, set_alpha_to_one=True)
    cls = CogVideoXImageToVideoPipeline if image_to_video else CogVideoXPipeline
    return cls(tokenizer=tokenizer(), text_encoder=_t5(), vae=vae, transformer=transformer, scheduler=scheduler)


def cogvideox():
    return _cogvideox(image_to_video=False)


def cogvideox_i2v():
    return _cogvideox(image_to_video=True)


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


def wan_i2v():
    """Wan 2.1 image-to-video: 16 + 4 + 16 input channels and a CLIP vision encoder of the reference image."""
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    t2v = wan()
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=36, out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32, image_dim=4)
    encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, intermediate_size=16, patch_size=8))
    processor = CLIPImageProcessor(crop_size=32, size=32)
    return WanImageToVideoPipeline(tokenizer=t2v.tokenizer, text_encoder=t2v.text_encoder, vae=t2v.vae,
                                   transformer=transformer, scheduler=t2v.scheduler, image_processor=processor,
                                   image_encoder=encoder)




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


BUILDERS = {"sd15": sd15, "sdxl": sdxl, "sd3": sd3, "flux": flux, "animatediff": animatediff, "wan": wan,
            "wan_i2v": wan_i2v, "cogvideox": cogvideox, "cogvideox_i2v": cogvideox_i2v}


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

