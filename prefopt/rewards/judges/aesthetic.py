"""The LAION aesthetic predictor v2 (christophschuhmann/improved-aesthetic-predictor,
``sac+logos+ava1-l14-linearMSE.pth``): a linear MLP on the L2-normalized CLIP ViT-L/14 image embedding,

    s(x) = MLP(f(x) / |f(x)|)          about 1..10 (the AVA rating scale)
    u(s) = clamp((s - 1) / 9, 0, 1)

Folder: a transformers CLIPModel folder of openai/clip-vit-large-patch14 with its
preprocessor_config.json, plus ``aesthetic_mlp.safetensors``,
the released .pth's state dict as it is (keys ``layers.0.weight`` ... ``layers.7.bias``).
Read for reference: christophschuhmann/improved-aesthetic-predictor (simple_inference.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from prefopt.rewards.judges.base import Judge, embedding, linear_head, processor_pixels

MLP_FILE = "aesthetic_mlp.safetensors"


class Aesthetic(Judge):
    """The LAION aesthetic score of each frame (prompts are not used)."""

    name, checkpoint = "Aesthetic", f"openai/clip-vit-large-patch14 and {MLP_FILE}"
    required = ("config.json", "preprocessor_config.json", MLP_FILE)

    def load(self, folder: Path) -> None:
        from safetensors.torch import load_file
        from transformers import AutoImageProcessor, CLIPModel

        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).eval().to(self.device)
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.head = linear_head(load_file(folder / MLP_FILE)).to(self.device)

    def frame_scores(self, frames: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        image = embedding(self.model.get_image_features(pixel_values=processor_pixels(self.processor, frames)))
        return self.head(torch.nn.functional.normalize(image, dim=-1)).squeeze(-1)

    def unit(self, raw: torch.Tensor) -> torch.Tensor:
        return ((raw - 1) / 9).clamp(0, 1)
