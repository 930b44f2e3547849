"""Pretrain the SynthHands base model: ``python -m prefopt.pretrain [key=value ...]``.

The same training loop as ``prefopt.train`` (objective ``sft``, all weights, EMA) from a random-init
``model=tiny_flow`` on ``data=mix`` (renders, a minority of them good hands); then the EMA weights and
the scheduler are exported as a diffusers folder (``export``, default ``<run dir>/model``) and the
model is evaluated. The shipped ``prefopt/assets/synth_base`` was made by

    python -m prefopt.pretrain export=prefopt/assets/synth_base

(seed 0; see prefopt/assets/synth_base/PROVENANCE.md), and the video base ``prefopt/assets/anim_base``
(``model=anim_base``) by

    python -m prefopt.pretrain model=tiny_video data=anim_mix modulation.enabled=true \
        trainer.max_steps=4000 trainer.batch_size=32 export=prefopt/assets/anim_base
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from prefopt.cli import to_config
from prefopt.errors import ConfigError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def export_model(final_dir: Path, scheduler, export: Path) -> Path:
    """A complete diffusers folder: the trained denoiser's files plus ``scheduler/``."""
    export.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copyfile(final_dir / name, export / name)
    scheduler.save_pretrained(export / "scheduler")
    return export


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pretrain")
def app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prefopt.evaluate import describe, evaluator
    from prefopt.models import build_model
    from prefopt.trainer import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    config = to_config(cfg)
    if config.lora.enabled:
        raise ConfigError("lora.enabled: pretraining trains all weights; set lora.enabled=false")
    summary = train(config, run_dir, OmegaConf.to_container(cfg, resolve=True))
    export = Path(config.export) if config.export else run_dir / "model"
    bundle = build_model(config.model)
    export_model(Path(summary["final_dir"]), bundle.scheduler, export)
    model = build_model(replace(config.model, path=str(export)))
    result = evaluator(config.data)(model.denoiser, model.scheduler, "pretrained", run_dir / "eval")
    (export / "pretrain.json").write_text(json.dumps({"command": "python -m prefopt.pretrain " + " ".join(sys.argv[1:]),
                                                      "seed": config.seed, "steps": summary["steps"],
                                                      "wall_s": summary["wall_s"], "final_loss": summary["loss"],
                                                      "evaluation": result}, indent=1))
    print(f"exported {export} ({summary['steps']} steps in {summary['wall_s']:.0f} s)")
    print(describe(result))


def main() -> None:
    from prefopt.cli import run_app

    run_app(app, CONF_DIR, "pretrain")


if __name__ == "__main__":
    main()
