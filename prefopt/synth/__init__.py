"""SynthHands: a procedural hand domain where "good hands" are defined exactly (SPEC s.4)."""

from prefopt.synth.render import HandSpec, render, sample_specs

__all__ = ["HandSpec", "render", "sample_specs"]
