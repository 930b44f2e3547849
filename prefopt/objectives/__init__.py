"""Preference objectives: pure functions of per-sample denoising errors (SPEC-methods.md).

Each objective is a dataclass whose fields are its hyper-parameters and whose ``__call__`` is its
equation, returning ``(loss, metrics)``; ``paired`` says whether it takes (2, B) winner/loser errors. ``REGISTRY`` maps ``objective=<name>`` to the class.
"""

import functools
import inspect

from prefopt.objectives.dpo import DPO
from prefopt.objectives.gapo import GAPO
from prefopt.objectives.hgdpo import HGDPO
from prefopt.objectives.ipa import IPA
from prefopt.objectives.sft import SFT

REGISTRY = {"dpo": DPO, "ipa": IPA, "hgdpo": HGDPO, "gapo": GAPO, "sft": SFT}


def objective_inputs(objective) -> tuple[str, ...]:
    """The keyword inputs an objective's equation reads (what the training loop must compute)."""
    return _call_parameters(type(objective))


@functools.cache
def _call_parameters(cls) -> tuple[str, ...]:
    return tuple(name for name in inspect.signature(cls.__call__).parameters if name != "self")


__all__ = ["DPO", "GAPO", "HGDPO", "IPA", "SFT", "REGISTRY", "objective_inputs"]
