"""The plan of a run: its segments, rounds x curriculum stages, in order.

A round of generate-score-train re-samples model-made data from the policy; a curriculum objective
(HG-DPO) returns its stages as a value, ``curriculum(total_steps) -> [(stage, steps)]``, and each
stage's objective as ``at_stage(stage)``. A segment is a stretch of steps with one dataset and one
objective: a stage cut where a round ends (rounds split the steps evenly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Segment:
    index: int
    round: int
    stage: str | None  # the curriculum stage (None: an objective without a curriculum)
    objective: Any  # the objective's value for this stage
    start: int  # the global step this segment starts after
    steps: int

    @property
    def key(self) -> tuple[int, str | None]:
        return self.round, self.stage


def plan(objective, total_steps: int, rounds: int = 1) -> list[Segment]:
    """The run's segments; their steps add up to ``total_steps``."""
    stages = objective.curriculum(total_steps) if hasattr(objective, "curriculum") else [(None, total_steps)]
    ends = [round(total_steps * (r + 1) / rounds) for r in range(rounds)]
    segments, start = [], 0
    for stage, steps in stages:
        stage_objective = objective.at_stage(stage) if stage is not None else objective
        stop = start + steps
        while start < stop:
            r = next(i for i, end in enumerate(ends) if end > start)
            cut = min(stop, ends[r])
            segments.append(Segment(len(segments), r, stage, stage_objective, start, cut - start))
            start = cut
    return segments


def resume_point(segments: list[Segment], step: int) -> tuple[int, tuple[int, str | None]]:
    """(the first segment to run at ``step``, the (round, stage) the run is in before it). A run saved
    as segment i ended is still in segment i's round and stage; one saved inside segment i is in its own."""
    first = max(s.index for s in segments if s.start <= step)
    inside = segments[first].start < step or first == 0
    return first, segments[first].key if inside else segments[first - 1].key
