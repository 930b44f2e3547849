"""A run's set-up: the accelerate runtime and run dir, then the trained model and what trains it
(LoRA or all weights, optimizer, LR schedule, EMA, the reference, the noise process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.checkpoints import guard_run_dir, open_run
from prefopt.core import NoiseProcess, Reference
from prefopt.errors import ConfigError
from prefopt.launch import make_accelerator
from prefopt.models import ModelBundle, add_lora, half_precision_base
from prefopt.models.builders import input_channels
from prefopt.objectives import objective_inputs
from prefopt.training.state import check_resume, run_settings

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}  # of the frozen weights


def settings_line(cfg, processes: int) -> str:
    """The settings that matter, in one line, printed before a run starts."""
    objective, trainer = cfg.objective, cfg.trainer
    name = type(objective).__name__.lower()
    beta = f" β={objective.beta:g}" if hasattr(objective, "beta") else ""
    batch = trainer.batch_size * trainer.gradient_accumulation_steps * processes
    unit = " pairs" if objective.paired else ""
    weights = f"LoRA rank {cfg.lora.rank}" if cfg.lora.enabled else "full fine-tune"
    rounds = f"{trainer.rounds} round{'s' if trainer.rounds > 1 else ''}"
    return (f"prefopt: {name}{beta} | lr {trainer.learning_rate:.0e} | {trainer.max_steps} steps | effective batch "
            f"{batch}{unit} | {rounds} | {weights} | precision {trainer.mixed_precision} | model {cfg.model.name} | "
            f"data {cfg.data.name}")


def start(cfg, run_dir: Path):
    """(the Accelerator, the run's settings as saved in its checkpoints), with the run's seed set and
    the settings line printed, once the run may start: the model reads the data's channels, no other
    process runs in ``run_dir`` (its lock, held until the run ends), no earlier run is overwritten, a
    resumed run has the settings it was started with."""
    from accelerate.utils import set_seed

    accelerator = make_accelerator(cfg.trainer)
    accelerator.print(settings_line(cfg, accelerator.num_processes))
    check_channels(cfg)
    check_trainer(cfg.trainer, accelerator.device.type)
    settings = run_settings(cfg)
    _hold(accelerator, run_dir)
    guard_run_dir(run_dir, cfg.trainer.resume, cfg.trainer.overwrite, remove=accelerator.is_main_process)
    check_resume(settings, run_dir, cfg.trainer.resume)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    return accelerator, settings


def check_channels(cfg) -> None:
    """A pixel-space denoiser reads what prefopt's data builders make, RGB pixels: otherwise one line
    naming the model, before any data is read."""
    if cfg.model.family is not None or not cfg.data.builder.startswith("prefopt."):
        return
    channels = input_channels(cfg.model)
    if channels not in (None, 3):
        key = f"model.path={cfg.model.path}" if cfg.model.path else "model.config"
        raise ConfigError(f"{key}: model={cfg.model.name} reads {channels} channels but data={cfg.data.name} gives "
                          "RGB pixels (3 channels); choose a model with in_channels 3, or a latent model family")


def check_trainer(trainer, device: str) -> None:
    """What the trainer config asks of diffusers and the device, before anything is built."""
    from diffusers.optimization import SchedulerType

    names = [kind.value for kind in SchedulerType]
    if trainer.lr_scheduler not in names:
        raise ConfigError(f"trainer.lr_scheduler must be one of {names}, got {trainer.lr_scheduler!r}")
    if trainer.mixed_precision == "fp16" and device == "cpu":
        raise ConfigError("trainer.mixed_precision=fp16 needs a GPU (this run is on the CPU); use "
                          "trainer.mixed_precision=bf16 or no")


def _hold(accelerator, run_dir: Path) -> None:
    """The main process takes the run dir's lock; every process learns whether it got it."""
    refused = None
    try:
        open_run(run_dir, lock=accelerator.is_main_process)
    except ConfigError as error:
        refused = str(error)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refused = broadcast_object_list([refused])[0]
    if refused:
        raise ConfigError(refused)


@dataclass
class Run:
    """The trained network (``model``: as accelerate prepared it; ``policy``: the plain module, for
    saving, EMA and sampling) and what trains it."""

    accelerator: object
    bundle: ModelBundle
    model: torch.nn.Module
    policy: torch.nn.Module
    trainable: list
    optimizer: object
    lr_scheduler: object
    ema: object | None
    reference: Reference | None
    process: NoiseProcess

    @property
    def shard(self) -> tuple[int, int]:
        """(rank, world): this process's rows of a global batch."""
        return self.accelerator.process_index, self.accelerator.num_processes

    def sampler(self) -> ModelBundle:
        """The current policy as a model to sample a new round's data from."""
        return ModelBundle(self.policy, self.bundle.scheduler, self.bundle.path)


def _optimizer(trainer, trainable: list, processes: int):
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(trainable, lr=trainer.learning_rate, weight_decay=trainer.weight_decay)
    # accelerate's prepared scheduler steps once per process per optimizer step: scale like diffusers' scripts
    lr_scheduler = get_scheduler(trainer.lr_scheduler, optimizer, num_warmup_steps=trainer.warmup_steps * processes,
                                 num_training_steps=trainer.max_steps * processes)
    return optimizer, lr_scheduler


def prepare(cfg, accelerator, bundle: ModelBundle) -> Run:
    """LoRA (or all weights), optimizer and LR schedule through accelerate, EMA, the reference and
    the noise process; then the run's seed again, the same on every process (each draws the global
    batch's noise and keeps its rows)."""
    from accelerate.utils import set_seed

    trainer, model = cfg.trainer, bundle.denoiser
    weight_dtype = WEIGHT_DTYPES[trainer.mixed_precision]
    if cfg.lora.enabled:
        add_lora(model, cfg.lora.rank, cfg.lora.alpha, cfg.lora.target_modules)
        half_precision_base(model, weight_dtype)  # the frozen base in half precision, the adapter trains in fp32
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    model, optimizer, lr_scheduler = accelerator.prepare(model, *_optimizer(trainer, trainable, accelerator.num_processes))
    policy = accelerator.unwrap_model(model, keep_torch_compile=False)  # eager: saving, EMA, sampling rounds
    ema = None
    if trainer.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(trainable, decay=trainer.ema_decay)
        accelerator.register_for_checkpointing(ema)
    reference = (Reference(policy, lora=cfg.lora.enabled, dtype=weight_dtype, network=model, compile=trainer.compile)
                 if "ref_err" in objective_inputs(cfg.objective) else None)
    process = NoiseProcess(bundle.scheduler, trainer.timestep_sampling, trainer.logit_mean, trainer.logit_std,
                           trainer.mode_scale)
    set_seed(cfg.seed)
    return Run(accelerator, bundle, model, policy, trainable, optimizer, lr_scheduler, ema, reference, process)
