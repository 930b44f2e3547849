"""A run's set-up: the accelerate runtime and run dir, then the trained model and what trains it
(LoRA or all weights, optimizer, LR schedule, EMA, the reference, the noise process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prefopt.checkpoints import guard_run_dir
from prefopt.core import NoiseProcess, Reference
from prefopt.launch import make_accelerator
from prefopt.models import ModelBundle, add_lora, half_precision_base
from prefopt.objectives import objective_inputs

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
    """The Accelerator, after the run dir's guard, with the run's seed set; the settings line printed."""
    from accelerate.utils import set_seed

    accelerator = make_accelerator(cfg.trainer)
    accelerator.print(settings_line(cfg, accelerator.num_processes))
    guard_run_dir(run_dir, cfg.trainer.resume, cfg.trainer.overwrite, remove=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    return accelerator


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
