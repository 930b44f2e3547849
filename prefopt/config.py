"""Structured configs, registered in Hydra's ConfigStore so that a typo or a wrong type fails at
start-up with the key named. ``conf/`` groups mirror these dataclasses; objective schemas are the
objective classes themselves (``prefopt.objectives.REGISTRY``), so ``OmegaConf.to_object`` on the
composed config returns a ready-to-call objective.

This module must stay light (no diffusers import): the CLI pre-check composes every job's config
with it before any model code loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from prefopt.config_checks import _not_negative, _one_of, _positive, _seeds, check_finite
from prefopt.core.noise import TIMESTEP_SAMPLING
from prefopt.core.reference import PREVIOUS_STAGE_NEEDS_FULL
from prefopt.errors import ConfigError
from prefopt.modules.hand_aware import DEFAULTS as HAND_AWARE_DEFAULTS
from prefopt.modules.hand_aware import HandAware
from prefopt.objectives import REGISTRY
from prefopt.paths import ASSETS, cache_root

MIXED_PRECISION = ("no", "fp16", "bf16")
COMPILE_BACKENDS = ("no", "inductor", "aot_eager", "eager", "cudagraphs")  # accelerate's dynamo_backend values
LOGGER_BACKENDS = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")
MAX_MODE_SCALE = 1.75  # ~ 1 / (pi/2 - 1): SD3's mode map u -> 1 - u - s (cos^2(pi u / 2) - 1 + u) stays monotonic


@dataclass
class ModelConfig:
    """A diffusers denoiser and its training scheduler, loaded from ``path`` (a local diffusers
    folder), or, when ``path`` is null, built from ``config`` with ``seed`` into ``cache_dir``."""

    name: str = "tiny"
    family: str | None = None  # sd15 | sdxl | sd3 | flux | animatediff | wan | wan_i2v | cogvideox: ``path`` is a pipeline folder (prefopt/models/families.py)
    path: str | None = None
    subfolder: str = ""  # the denoiser's folder in ``path`` ("": the family's unet/transformer, or ``path`` itself)
    denoiser_class: str = "UNet2DModel"
    scheduler_class: str = "DDPMScheduler"
    prediction_type: str | None = None  # DDPM family: epsilon | v_prediction | sample (null: the scheduler's own); flow ignores it
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)  # over the folder's scheduler config (flow: shift)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    cache_dir: str = "${prefopt.cache:models}"  # $PREFOPT_CACHE/models (prefopt/paths.py)
    gradient_checkpointing: bool = False
    guidance: float | None = None  # a guidance-distilled denoiser's guidance embedding in training (FLUX.1-dev: 3.5)

    def __post_init__(self):
        from prefopt.models.families import FAMILIES

        if self.family is not None:
            _one_of("model.family", self.family, [*FAMILIES, None])


@dataclass
class LoraConfig:
    """peft LoRA; the reference is then the same network with adapters disabled. ``enabled=false``
    trains all weights against a frozen copy."""

    enabled: bool = True
    rank: int = 8
    alpha: float = 8.0
    target_modules: list[str] = field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])

    def __post_init__(self):
        _positive("lora.rank", self.rank)
        _positive("lora.alpha", self.alpha)


@dataclass
class DataConfig:
    """``files`` (your data): a JSONL manifest of image/video files or Parquet pairs at ``path``
    (prefopt/data/files.py). ``builder`` names the function that builds the dataset: the embedded
    benchmarks' (``data=synth``, ``synth_anim``, ...) live in ``prefopt/tasks``."""

    name: str = "files"
    builder: str = "prefopt.data.files.build_files"  # (cfg, paired, stage, model) -> PreferenceDataset
    num_samples: int = 1024
    image_size: int = 16
    seed: int = 0
    sample_steps: int = 30  # model-made data: sampling steps of the pool
    sdedit_strength: float = 0.5  # synth, HG-DPO normal stage: how far real renders are noised
    good_fraction: float = 0.4  # mix: share of good hands
    path: str | None = None  # files: a JSONL manifest, Parquet shards (file, folder, glob) or a datasets folder
    columns: dict[str, str] = field(default_factory=dict)  # files: prefopt's column name -> the source's (caption: text)
    stages: dict[str, str] = field(default_factory=dict)  # files, HG-DPO: a manifest per stage (easy, normal, hard)
    num_frames: int | None = None  # files: frames every video must have (null: images, or any equal count)
    on_bad: str = "fail"  # files: fail at the first bad row, or skip bad rows (logged)
    clips_per_motion: int = 2  # synth_anim: pool clips sampled under each driving motion (pairs are made within one)
    top_fraction: float | None = None  # synth_anim, SFT/IPA: the pool's top fraction by reward (null: its good clips)

    def __post_init__(self):
        _one_of("data.on_bad", self.on_bad, ("fail", "skip"))
        if self.num_frames is not None:
            _positive("data.num_frames", self.num_frames)
        _positive("data.num_samples", self.num_samples)
        _positive("data.image_size", self.image_size)
        _positive("data.sample_steps", self.sample_steps)
        _positive("data.clips_per_motion", self.clips_per_motion)
        if not 0 < self.sdedit_strength <= 1:
            raise ConfigError(f"data.sdedit_strength must be in (0, 1], got {self.sdedit_strength}")
        if not 0 <= self.good_fraction <= 1:
            raise ConfigError(f"data.good_fraction must be in [0, 1], got {self.good_fraction}")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ConfigError(f"data.top_fraction must be in (0, 1] or null, got {self.top_fraction}")


@dataclass
class ModulationConfig:
    """Temporal motion modulation (prefopt/modules/temporal_modulation.py) of model=tiny_video."""

    enabled: bool = False  # a module on the motion condition, ``rate`` entries per video frame
    compression: int = 1  # folded onto a latent grid with this temporal compression
    rate: int = 1
    audio: bool = False  # a second module on the audio condition, ``audio_rate`` samples per video frame
    audio_rate: int = 4

    def __post_init__(self):
        for key in ("compression", "rate", "audio_rate"):
            _positive(f"modulation.{key}", getattr(self, key))
        if self.audio and not self.enabled:
            raise ConfigError("modulation.audio needs modulation.enabled=true (the module reads the audio)")


@dataclass
class TrainerConfig:
    """Defaults for real use: LoRA on an SD-scale model (Diffusion-DPO's published LoRA learning rate
    1e-5; an effective batch of 16 per process reached by accumulation, which fits one GPU)."""

    max_steps: int = 2000
    batch_size: int = 4  # per process; pairs for paired objectives
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "constant_with_warmup"  # any name of diffusers.optimization.get_scheduler
    warmup_steps: int = 200
    gradient_accumulation_steps: int = 4
    max_grad_norm: float = 1.0
    rounds: int = 1  # rounds of generate-score-train: each round after the first re-samples model-made data from the policy
    ema_decay: float = 0.0  # > 0: keep an EMA of the trained weights (diffusers' EMAModel) and save it
    mixed_precision: str = "no"
    compile: str = "no"  # torch.compile backend of the denoiser, through accelerate (inductor; no: eager)
    timestep_sampling: str = "uniform"  # uniform | logit_normal | mode
    logit_mean: float = 0.0  # logit_normal: logit(t) ~ N(logit_mean, logit_std), t the noise level (> 0: noisier)
    logit_std: float = 1.0
    mode_scale: float = 1.29  # mode: SD3's scale (0: uniform; larger: more of the middle; <= 1.75)
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end (and on SIGTERM)
    keep_checkpoints: int = 2  # the newest checkpoints kept
    resume: str = "none"  # none | auto (newest checkpoint that loads, else start) | <checkpoint dir>
    overwrite: bool = False  # replace an earlier run's outputs in the run dir (else refuse to start)
    max_nonfinite_steps: int = 5  # non-finite steps (skipped) in a row that stop the run
    num_workers: int = 0
    cpu: bool = False

    def __post_init__(self):
        for key in ("max_steps", "batch_size", "learning_rate", "gradient_accumulation_steps", "log_every", "rounds",
                    "keep_checkpoints", "max_nonfinite_steps"):
            _positive(f"trainer.{key}", getattr(self, key))
        for key in ("weight_decay", "warmup_steps", "max_grad_norm", "checkpoint_every", "num_workers"):
            _not_negative(f"trainer.{key}", getattr(self, key))  # max_grad_norm 0: no clipping
        _one_of("trainer.mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _one_of("trainer.compile", self.compile, COMPILE_BACKENDS)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"trainer.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.rounds > self.max_steps:
            raise ConfigError(f"trainer.rounds={self.rounds} exceeds trainer.max_steps={self.max_steps}")
        _one_of("trainer.timestep_sampling", self.timestep_sampling, TIMESTEP_SAMPLING)
        _positive("trainer.logit_std", self.logit_std)
        if not 0 <= self.mode_scale <= MAX_MODE_SCALE:
            raise ConfigError(f"trainer.mode_scale must be in [0, {MAX_MODE_SCALE}] (above, SD3's mode map is not "
                              f"monotonic), got {self.mode_scale}")


@dataclass
class LoggerConfig:
    backend: str = "wandb"
    mode: str = "offline"  # wandb mode; `wandb sync` uploads offline runs later
    project: str = "prefopt"
    group: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self):
        _one_of("logger.backend", self.backend, LOGGER_BACKENDS)
        _one_of("logger.mode", self.mode, WANDB_MODES)


@dataclass
class EvalConfig:
    """After training, sample base and trained model from fixed seeds and score them with the
    evaluator ``evaluator`` names (a class path, prefopt/evaluation; ``conf/eval/``); null or
    ``num_samples: 0`` skips it. ``options``: the evaluator's own settings."""

    evaluator: str | None = None
    num_samples: int = 512
    seed: int = 10_000
    steps: int = 30
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.num_samples < 0:
            raise ConfigError(f"eval.num_samples must be >= 0, got {self.num_samples}")
        _positive("eval.steps", self.steps)


@dataclass
class Config:
    objective: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    modulation: ModulationConfig = field(default_factory=ModulationConfig)
    # a plain block because its key ``lambda`` is a Python keyword; validated into a HandAware
    hand_aware: Any = field(default_factory=lambda: dict(HAND_AWARE_DEFAULTS))
    seed: int = 0

    def __post_init__(self):
        from prefopt.models.builders import check_fits

        if not isinstance(self.hand_aware, HandAware):
            check_finite(dict(self.hand_aware), "hand_aware")
            self.hand_aware = HandAware.from_block(dict(self.hand_aware))
        check_finite(self)
        _seeds(self)
        check_fits(self.model, self.data)
        if getattr(self.objective, "reference", "base") == "previous_stage" and self.lora.enabled:
            raise ConfigError(PREVIOUS_STAGE_NEEDS_FULL)
        if self.modulation.enabled and self.model.denoiser_class != "MotionVideoModel":
            raise ConfigError(f"modulation.enabled: {self.model.denoiser_class} takes no motion condition "
                              "(model=tiny_video builds a MotionVideoModel)")
        if self.trainer.rounds > 1 and not getattr(data_builder(self.data), "model_made", False):
            raise ConfigError(f"trainer.rounds={self.trainer.rounds}: data={self.data.name} is not made by the model, "
                              "so every round would re-read the same data; use trainer.rounds=1 (or make a new pool "
                              "with prefopt.generate between runs)")


@dataclass
class PretrainConfig(Config):
    """``python -m prefopt.pretrain``: a Config whose trained model is also written, with its
    scheduler, as a complete diffusers folder to ``export`` (default: ``<run dir>/model``)."""

    export: str | None = None


JUDGES = ("pickscore", "hpsv2", "imagereward", "clip_score", "aesthetic")  # conf/reward options with a weight folder


@dataclass
class PipelineSampling:
    """How a diffusers pipeline samples: ``prefopt.generate``'s settings and ``prefopt.evaluate``'s ``sampling.*``."""

    KEY: ClassVar[str] = ""  # where the settings sit in their command's config, for error messages

    batch_size: int = 4
    steps: int = 30
    guidance_scale: float | None = None  # null: the pipeline's default
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None  # video pipelines (null: the pipeline's default)
    fps: int = 8
    dtype: str = "float32"
    pipeline_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for key in ("batch_size", "steps", "fps"):
            _positive(self.KEY + key, getattr(self, key))
        for key in ("height", "width", "num_frames"):
            if getattr(self, key) is not None:
                _positive(self.KEY + key, getattr(self, key))
        _one_of(self.KEY + "dtype", self.dtype, ("float32", "bfloat16", "float16"))
        check_finite(self)


@dataclass
class SamplingConfig(PipelineSampling):
    """How ``prefopt.evaluate`` samples a real model and its base, both on seed + i * samples_per_prompt + j."""

    KEY: ClassVar[str] = "sampling."
    samples_per_prompt: int = 1
    seed: int = 0
    conditions: list[str] = field(default_factory=list)  # .jsonl keys passed to the pipeline (I2V: image)


@dataclass
class EvaluateConfig:
    """``python -m prefopt.evaluate``: a finished run (``run``: its model, weights and evaluator), a model
    (``model=...`` with ``eval=...``), or a real model's ``adapter`` against its base (evaluation/real.py)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    run: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    adapter: str | None = None  # a LoRA folder (a run's final/); with ``prompts``: sample base and aligned
    prompts: str | None = None  # .txt (one per line) or .jsonl (prompt + conditions)
    judges: list[str] = field(default_factory=lambda: ["pickscore"])  # conf/reward options, scored raw (Diffusion-DPO: PickScore)
    judge_paths: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(JUDGES))  # judge -> its local folder
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)  # set by the model groups; the sampler does not read it

    def __post_init__(self):
        _positive("eval.num_samples", self.eval.num_samples)
        check_finite(self)


@dataclass
class PromptsConfig:
    """``prefopt.generate``'s prompts: a ``.txt`` file (one per line) or a ``.jsonl`` file of rows with a
    ``prompt`` and optional conditions (a reference image, a pose video: paths relative to the file)."""

    prompts: str = MISSING
    samples_per_prompt: int = 4
    seed: int = 0  # sample j of prompt i is drawn with seed + i * samples_per_prompt + j
    conditions: list[str] = field(default_factory=list)  # .jsonl keys passed to the pipeline (image/video files loaded)

    def __post_init__(self):
        _positive("data.samples_per_prompt", self.samples_per_prompt)


@dataclass
class GenerateConfig(PipelineSampling):
    """``python -m prefopt.generate``: sample a local diffusers pipeline into ``out`` (files + ``samples.jsonl``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: PromptsConfig = field(default_factory=PromptsConfig)
    out: str = MISSING
    pipeline: str | None = None  # a diffusers pipeline class over the folder's own (e.g. StableDiffusionImg2ImgPipeline)
    adapter: str | None = None  # a LoRA folder (a run's final/), loaded with the pipeline's load_lora_weights
    lora: LoraConfig = field(default_factory=LoraConfig)  # set by the model groups; the sampler does not read it


@dataclass
class ScoreConfig:
    """``python -m prefopt.score``: add a reward's scores to a sample manifest (in place, resumable)."""

    manifest: str = MISSING
    reward: Any = MISSING  # {_target_: ...}: a callable (samples, prompts) -> (B,) or {dim: (B,)} in [0, 1]
    batch_size: int = 16
    overwrite: bool = False  # re-score rows that already have a score
    save_every: int = 256  # rows between atomic rewrites of the manifest

    def __post_init__(self):
        _positive("batch_size", self.batch_size)
        _positive("save_every", self.save_every)
        check_finite(self)


@dataclass
class CurateConfig:
    """``python -m prefopt.curate``: a scored manifest -> the training manifest one objective needs."""

    manifest: str = MISSING
    method: str = MISSING  # the objective it is for: ipa | sft (top samples) | dpo | gapo (pairs) | hgdpo (stage sets)
    out: str | None = None  # null: <manifest folder>/<method>/
    fraction: float = 0.25  # ipa/sft: the top fraction of scored samples
    threshold: float | None = None  # ipa/sft: keep score >= threshold instead
    pairing: str = "best_worst"  # dpo/gapo: best_worst (per prompt) | all (every pair of a prompt)
    min_gap: float = 0.0  # pairs with s_w - s_l <= min_gap are ties, dropped
    real: str | None = None  # hgdpo: JSONL of real images, {"image": path, "prompt": ...}; row i <-> prompt i
    recon: str | None = None  # hgdpo: generated manifest of part-noised reconstructions of the real images

    def __post_init__(self):
        _one_of("method", self.method, ("ipa", "sft", "dpo", "gapo", "hgdpo"))
        _one_of("pairing", self.pairing, ("best_worst", "all"))
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.min_gap < 0:
            raise ConfigError(f"min_gap must be >= 0, got {self.min_gap}")
        check_finite(self)


def data_builder(data: DataConfig):
    """The function ``data.builder`` names: ``(cfg, paired, stage, model) -> PreferenceDataset``; a
    ``model_made`` attribute says it samples the model (a new round re-samples it)."""
    from hydra.utils import get_method

    try:
        return get_method(data.builder)
    except Exception as error:  # noqa: BLE001 - an unknown path is a config error
        raise ConfigError(f"data.builder: cannot import {data.builder!r} ({error})") from None


def register() -> None:
    OmegaConf.register_new_resolver("prefopt.asset", lambda name: str(ASSETS / name), replace=True)
    OmegaConf.register_new_resolver("prefopt.cache", lambda name: str(cache_root() / name), replace=True)
    store = ConfigStore.instance()
    store.store(name="prefopt_schema", node=Config)
    store.store(name="prefopt_pretrain_schema", node=PretrainConfig)
    store.store(name="prefopt_evaluate_schema", node=EvaluateConfig)
    store.store(name="prefopt_generate_schema", node=GenerateConfig)
    store.store(name="prefopt_score_schema", node=ScoreConfig)
    store.store(name="prefopt_curate_schema", node=CurateConfig)
    for name, objective in REGISTRY.items():
        store.store(group="schema/objective", name=name, node=objective)


register()
