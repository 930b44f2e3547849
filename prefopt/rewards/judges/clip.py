"""The three judges that are a CLIP model's image-text cosine, each from a transformers
``CLIPModel`` folder (config.json, weights, tokenizer, preprocessor_config.json):

    cos(x, c) = <f(x) / |f(x)|, g(c) / |g(c)|>      f, g: the projected image and text embeddings

- PickScore (Kirstain et al. 2023, "Pick-a-Pic"), weights yuvalkirstain/PickScore_v1:
  s = exp(logit_scale) cos (logit_scale.exp() = 100 in the release), u(s) = (s / exp(logit_scale) + 1) / 2.
- HPSv2.1 (Wu et al. 2023, "Human Preference Score v2"): s = cos, as ``hpsv2.score`` returns it
  (the HPSv2 benchmark tables print 100 cos), u(s) = (s + 1) / 2. HPS ships open_clip weights;
  open_clip_torch would replace this environment's torch, so the folder is their transformers
  conversion (docs/judges.md).
- CLIP score (Hessel et al. 2021, "CLIPScore"), weights openai/clip-vit-large-patch14 (or any CLIP):
  s = max(100 cos, 0), per sample as torchmetrics' ``clip_score``, u(s) = s / 100.

Images are preprocessed with the folder's CLIP image processor settings (shortest side, centre
crop, mean, std); prompts are tokenized with padding and truncated to the text model's length (77).
Read for reference: yuvalkirstain/PickScore (README inference example), tgxs002/HPSv2
(hpsv2/img_score.py), Lightning-AI/torchmetrics (functional/multimodal/clip_score.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.rewards.judges.base import Judge, embedding, processor_pixels


class ClipJudge(Judge):
    """A CLIP folder's image-text cosine; subclasses choose the raw score and its unit map."""

    required = ("config.json", "preprocessor_config.json", "tokenizer_config.json")

    def load(self, folder: Path) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval().to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.max_tokens = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)

    def cosine(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """cos(x, c) (N,) of frames (N, 3, H, W) in [-1, 1] and their prompts."""
        text = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt").to(self.device)
        image = embedding(self.model.get_image_features(pixel_values=processor_pixels(self.processor, frames)))
        words = embedding(self.model.get_text_features(input_ids=text.input_ids, attention_mask=text.attention_mask))
        return torch.nn.functional.cosine_similarity(image, words, dim=-1)


class PickScore(ClipJudge):
    """PickScore: s = exp(logit_scale) cos(x, c) (0..100 for the release); u(s) = (cos + 1) / 2."""

    name, checkpoint = "PickScore", "yuvalkirstain/PickScore_v1"

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.model.logit_scale.exp() * self.cosine(frames, prompts)

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        return ((raw / self.model.logit_scale.exp().cpu() + 1) / 2).clamp(0, 1)


class HPSv2(ClipJudge):
    """HPSv2.1: s = cos(x, c) (about 0.2..0.35 on generated images); u(s) = (s + 1) / 2."""

    name, checkpoint = "HPSv2", "xswu/HPSv2 (HPS_v2.1_compressed.pt) as a transformers CLIPModel"

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.cosine(frames, prompts)

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        return ((raw + 1) / 2).clamp(0, 1)


class CLIPScore(ClipJudge):
    """CLIP score: s = max(100 cos(x, c), 0) in [0, 100]; u(s) = s / 100."""

    name, checkpoint = "CLIPScore", "openai/clip-vit-large-patch14 (or another CLIPModel)"

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (100 * self.cosine(frames, prompts)).clamp(min=0)

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw / 100).clamp(0, 1)
