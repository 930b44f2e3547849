"""The shared denoising-likelihood core (SPEC s.2): noise, timesteps, targets, per-sample errors,
and the reference pass. Every objective is a function of what this package computes."""

from prefopt.core.errors import PreferenceErrors, preference_errors
from prefopt.core.noise import Noised, NoiseProcess
from prefopt.core.reference import Reference, adapters_disabled
from prefopt.core.weighting import per_sample_error

__all__ = [
    "NoiseProcess",
    "Noised",
    "PreferenceErrors",
    "Reference",
    "adapters_disabled",
    "per_sample_error",
    "preference_errors",
]
