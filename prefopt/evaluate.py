"""``python -m prefopt.evaluate run=<run dir>``: a finished run's model with its ``final/`` weights,
scored by the run's own evaluator (its ``eval`` config: SynthHands images, SynthHands Animation
clips, ...); or ``python -m prefopt.evaluate model=base [eval=synthhands]``: a model as it is.
``eval.num_samples``, ``eval.seed``, ``eval.steps`` apply to both. Writes ``<name>.json`` and a grid
into the run dir's ``eval/`` (or ``outputs/evaluate/<model>/<time>``) and prints one line.

A real model against its base, judged (prefopt/evaluation/real.py):

    python -m prefopt.evaluate model=sd3 model.path=<pipeline> adapter=<run>/final prompts=<file> \
        'judges=[pickscore,hpsv2]' judge_paths.pickscore=<folder> judge_paths.hpsv2=<folder>
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


def against_base(config, out: Path) -> None:
    """Sample the base and the adapted pipeline on the same seeds, score both with every judge, and
    write ``evaluation.json``/``evaluation.md`` (means, win rates) and ``pairs.png`` into ``out``."""
    from dataclasses import fields

    from prefopt.config import GenerateConfig, PipelineSampling, PromptsConfig
    from prefopt.evaluation import real
    from prefopt.generate import generate
    from prefopt.io import atomic_write, write_json
    from prefopt.launch import partial_state

    if not config.model.family or not config.model.path:
        raise ConfigError("model.path: evaluating against the base samples a diffusers pipeline folder "
                          "(model=<family> model.path=<folder>)")
    if not config.judges:
        raise ConfigError("judges: name at least one judge, e.g. 'judges=[pickscore,hpsv2]'")
    for name in config.judges:  # a judge without its folder stops before any sampling, on every process
        real.judge(name, config.judge_paths, build=False)
    sampling = config.sampling
    data = PromptsConfig(prompts=config.prompts, samples_per_prompt=sampling.samples_per_prompt, seed=sampling.seed,
                         conditions=list(sampling.conditions))
    settings = {item.name: getattr(sampling, item.name) for item in fields(PipelineSampling)}
    manifests = {which: generate(GenerateConfig(model=config.model, data=data, out=str(out / which), adapter=adapter,
                                                **settings))
                 for which, adapter in (("base", None), ("aligned", config.adapter))}
    if not partial_state().is_main_process:
        return
    table = {}
    for name in config.judges:  # one judge in memory at a time, on the main process
        scorer = real.judge(name, config.judge_paths)
        table[name] = {which: real.scores(scorer, manifest, out / "scores" / f"{which}-{name}.json")
                       for which, manifest in manifests.items()}
        del scorer
    result = real.summarize(table)
    write_json(out / "evaluation.json", {"adapter": config.adapter, "model.path": config.model.path,
                                         "prompts": config.prompts, "judges": result})
    text = real.markdown(result)
    atomic_write(out / "evaluation.md", lambda tmp: tmp.write_text(text + "\n"))
    real.pair_grid(manifests["base"], manifests["aligned"], out / "pairs.png")
    print(text)
    print(f"results: {out / 'evaluation.json'} (pairs: {out / 'pairs.png'})")


def evaluate(config) -> None:
    from hydra.core.hydra_config import HydraConfig

    if config.adapter or config.prompts:
        if not (config.adapter and config.prompts):
            missing = "prompts" if config.adapter else "adapter"
            raise ConfigError(f"{missing}: evaluating a model against its base needs both adapter=<run>/final and "
                              "prompts=<file>")
        against_base(config, Path(HydraConfig.get().runtime.output_dir))
        return

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
