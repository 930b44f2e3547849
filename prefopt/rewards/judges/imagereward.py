"""ImageReward (Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for
Text-to-Image Generation"), weights THUDM/ImageReward (ImageReward.pt): BLIP's ViT encodes the
image, BLIP's BERT text encoder reads the prompt with cross-attention to the image tokens, and a
linear MLP maps the [CLS] state h(x, c) (768) to the reward, standardized with the training set's
statistics:

    s(x, c) = (MLP(h(x, c)) - 0.16717362830052426) / 1.0333394966054072     about -2..2
    u(s)    = sigmoid(s)

Preprocessing as ImageReward's: shortest side resized to the ViT's image size (224; bicubic), the
centre crop, OpenAI CLIP's mean and std; prompts padded and truncated to 35 tokens.
Folder: a transformers ``BlipForImageTextRetrieval`` folder of the BLIP ViT-L (config.json, weights,
the BERT tokenizer) plus ``imagereward_mlp.safetensors`` (ImageReward.pt's ``mlp.layers.*`` without the
``mlp.`` prefix). No converter from ImageReward.pt is provided (docs/judges.md).
Read for reference: THUDM/ImageReward (ImageReward/ImageReward.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.rewards.judges.base import Judge, linear_head, resize_crop_normalize

MLP_FILE = "imagereward_mlp.safetensors"
REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
MAX_TOKENS = 35


class ImageReward(Judge):
    """ImageReward's standardized reward s(x, c); u(s) = sigmoid(s)."""

    name, checkpoint = "ImageReward", f"THUDM/ImageReward as a BlipForImageTextRetrieval folder and {MLP_FILE}"
    required = ("config.json", "tokenizer_config.json", MLP_FILE)

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BlipForImageTextRetrieval

        blip = BlipForImageTextRetrieval.from_pretrained(folder, local_files_only=True).eval().to(self.device)
        self.vision, self.text = blip.vision_model, blip.text_encoder
        self.image_size = blip.config.vision_config.image_size
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.head = linear_head(load_file(folder / MLP_FILE)).to(self.device)

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        pixels = resize_crop_normalize(frames, self.image_size, (self.image_size,) * 2, CLIP_MEAN, CLIP_STD)
        image_tokens = self.vision(pixel_values=pixels).last_hidden_state
        text = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=MAX_TOKENS,
                              return_tensors="pt").to(self.device)
        state = self.text(input_ids=text.input_ids, attention_mask=text.attention_mask,
                          encoder_hidden_states=image_tokens,
                          encoder_attention_mask=torch.ones(image_tokens.shape[:-1], dtype=torch.long,
                                                            device=self.device)).last_hidden_state[:, 0]
        return ((self.head(state) - REWARD_MEAN) / REWARD_STD).squeeze(-1)

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw)
