"""``python -m prefopt.evaluate run=<run dir>``: a finished run's model with its ``final/`` weights,
scored by the run's own evaluator (its ``eval`` config: SynthHands images, SynthHands Animation
clips, ...); or ``python -m prefopt.evaluate model=base [eval=synthhands]``: a model as it is.
``eval.num_samples``, ``eval.seed``, ``eval.steps`` apply to both. Writes ``<name>.json`` and a grid
into the run dir's ``eval/`` (or ``outputs/evaluate/<model>/<time>``) and prints one line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.cli import command
from prefopt.errors import ConfigError, first_line


def load_run(run_dir: Path):
    """(denoiser, scheduler, the run's EvalConfig) of a finished ``prefopt.train`` run."""
    from prefopt.config import EvalConfig, LoraConfig, ModelConfig
    from prefopt.models import build_model, load_trained

    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"run={run_dir}: no .hydra/config.yaml (not a prefopt.train run dir)")
    try:
        saved = OmegaConf.load(config_path)
    except Exception as error:  # noqa: BLE001 - a damaged file of the user's: one line
        raise ConfigError(f"run={run_dir}: {config_path} does not parse ({first_line(error)})") from None
    OmegaConf.resolve(saved)  # the run's own interpolations (a video model's config reads modulation.*)

    def typed(schema, node):
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))

    bundle = build_model(typed(ModelConfig, saved.model))
    denoiser = load_trained(bundle, typed(LoraConfig, saved.lora), run_dir / "final")
    return denoiser, bundle.scheduler, typed(EvalConfig, saved.get("eval", {}))


def evaluate(config) -> None:
    from hydra.core.hydra_config import HydraConfig

    from prefopt.evaluation import build_evaluator
    from prefopt.models import build_model

    eval_cfg = config.eval
    if config.run:
        run_dir = Path(config.run)
        denoiser, scheduler, saved = load_run(run_dir)
        eval_cfg = replace(saved, num_samples=eval_cfg.num_samples, seed=eval_cfg.seed, steps=eval_cfg.steps)
        name, out_dir = "aligned", run_dir / "eval"
    else:
        bundle = build_model(config.model)
        denoiser, scheduler = bundle.denoiser, bundle.scheduler
        name, out_dir = config.model.name, Path(HydraConfig.get().runtime.output_dir)
    evaluator = build_evaluator(eval_cfg)
    if evaluator is None:
        raise ConfigError(f"eval: {'the run at ' + config.run if config.run else 'this model'} has no evaluator "
                          "(eval=none); choose one, e.g. eval=synthhands")
    result = evaluator.evaluate(denoiser, scheduler, name, out_dir)
    print(evaluator.describe(result))
    print(f"results: {out_dir / (name + '.json')}")


main = command("evaluate", evaluate)

if __name__ == "__main__":
    main()
