"""The frozen reference network.

With LoRA the reference is the same network with its peft adapters disabled (no second copy in
memory); with full fine-tuning it is a frozen deep copy taken before training. diffusers models get
their adapters through ``add_adapter`` (PeftAdapterMixin), which returns no ``PeftModel``, so we
toggle them with the model's own ``disable_adapters`` / ``enable_adapters`` in a try/finally.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from prefopt.errors import ConfigError

PREVIOUS_STAGE_NEEDS_FULL = ("objective.reference=previous_stage needs lora.enabled=false "
                             "(with LoRA the reference is the adapter-free base model)")


def set_adapters(model: torch.nn.Module, enabled: bool) -> None:
    """The model's own ``enable_adapters``/``disable_adapters`` where it has them (diffusers'
    PeftAdapterMixin), else the same switch on each peft layer (models without the mixin)."""
    if hasattr(model, "disable_adapters"):
        model.enable_adapters() if enabled else model.disable_adapters()
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(enabled)


@contextmanager
def adapters_disabled(model: torch.nn.Module):
    """Run ``model`` as its base network; adapters are re-enabled even if the body raises."""
    set_adapters(model, False)
    try:
        yield model
    finally:
        set_adapters(model, True)


class Reference:
    """``with reference() as network:`` yields the module that computes reference predictions."""

    def __init__(self, policy: torch.nn.Module, lora: bool, dtype: torch.dtype = torch.float32,
                 network: torch.nn.Module | None = None, compile: str = "no"):
        """``policy``: the model; ``network``: what runs it, when a wrapper must (FSDP gathers the
        shards in its own forward, a compiled policy its graphs); the adapters are switched on
        ``policy``. ``compile``: a torch.compile backend for the frozen copy ("no": eager)."""
        self.policy = policy
        self.network = policy if network is None else network
        self.lora = lora
        self.dtype = dtype  # of the frozen copy (half precision under mixed precision)
        self.compile = compile
        self.frozen = self.frozen_network = None
        if not lora:
            self._freeze(policy)

    def _freeze(self, model: torch.nn.Module) -> None:
        """``frozen``: the copy (its weights, state dict); ``frozen_network``: what runs it."""
        self.frozen = copy.deepcopy(model).requires_grad_(False).eval().to(self.dtype)
        compiled = self.compile != "no"
        self.frozen_network = torch.compile(self.frozen, backend=self.compile) if compiled else self.frozen

    @contextmanager
    def __call__(self):
        if self.lora:
            with adapters_disabled(self.policy):
                yield self.network
        else:
            yield self.frozen_network

    def reset_to_policy(self) -> None:
        """Make the current policy the reference (HG-DPO's ``reference: previous_stage``): a new
        frozen copy. With LoRA the reference is the adapter-free base, which cannot move."""
        if self.lora:
            raise ConfigError(PREVIOUS_STAGE_NEEDS_FULL)
        self._freeze(self.policy)
