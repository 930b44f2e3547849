"""Pretrain the SynthHands base model: ``python -m prefopt.pretrain [key=value ...]``.

The same training loop as ``prefopt.train`` (objective ``sft``, all weights, EMA) from a random-init
``model=tiny_flow`` on ``data=mix`` (renders, a minority of them good hands); then the EMA weights and
the scheduler are exported as a diffusers folder (``export``, default ``<run dir>/model``) and the
model is evaluated by the data's evaluator. The shipped ``prefopt/assets/synth_base`` was made by

    python -m prefopt.pretrain export=prefopt/assets/synth_base

(seed 0; see prefopt/assets/synth_base/PROVENANCE.md), and the video base ``prefopt/assets/anim_base``
(``model=anim_base``) by

    python -m prefopt.pretrain model=tiny_video data=anim_mix modulation.enabled=true modulation.audio=true trainer.max_steps=6000 trainer.batch_size=32 eval.num_samples=512 export=prefopt/assets/anim_base
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from prefopt.cli import command
from prefopt.errors import ConfigError


def export_model(final_dir: Path, scheduler, export: Path) -> Path:
    """A complete diffusers folder: the trained denoiser's files plus ``scheduler/``, each file
    written whole (prefopt/io.py)."""
    from prefopt.io import atomic_write, write_text

    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        atomic_write(export / name, lambda tmp, name=name: shutil.copyfile(final_dir / name, tmp))
    write_text(export / "scheduler" / scheduler.config_name, scheduler.to_json_string())
    return export


def pretrain(config) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prefopt.evaluation import build_evaluator
    from prefopt.io import write_json
    from prefopt.models import build_model
    from prefopt.training import train

    if config.lora.enabled:
        raise ConfigError("lora.enabled: pretraining trains all weights; set lora.enabled=false")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    evaluator = build_evaluator(config.eval)  # of the exported model, not base against trained
    summary = train(replace(config, eval=replace(config.eval, evaluator=None)), run_dir, asdict(config))
    export = Path(config.export) if config.export else run_dir / "model"
    export_model(Path(summary["final_dir"]), build_model(config.model).scheduler, export)
    model = build_model(replace(config.model, path=str(export)))
    result = evaluator.evaluate(model.denoiser, model.scheduler, "pretrained", run_dir / "eval") if evaluator else None
    write_json(export / "pretrain.json", {"command": "python -m prefopt.pretrain " + " ".join(sys.argv[1:]),
                                          "seed": config.seed, "steps": summary["steps"], "wall_s": summary["wall_s"],
                                          "final_loss": summary["loss"], "evaluation": result})
    print(f"exported {export} ({summary['steps']} steps in {summary['wall_s']:.0f} s)")
    if result is not None:
        print(evaluator.describe(result))


main = command("pretrain", pretrain, locked=True)

if __name__ == "__main__":
    main()
