"""The plan of segments (rounds x curriculum stages) and where a resumed run picks it up."""

from __future__ import annotations

from prefopt.objectives import HGDPO, IPA
from prefopt.training.plan import plan, resume_point


def test_each_segment_carries_its_stages_objective_as_a_value():
    hgdpo = HGDPO(beta=500)
    segments = plan(hgdpo, 9, rounds=2)
    assert [(s.round, s.stage, s.start, s.steps) for s in segments] == [
        (0, "easy", 0, 3), (0, "normal", 3, 1), (1, "normal", 4, 2), (1, "hard", 6, 3)]
    assert [s.objective.stage for s in segments] == ["easy", "normal", "normal", "hard"]
    assert all(s.objective.beta == 500 for s in segments)
    assert hgdpo.stage == "hard"  # the objective itself is untouched
    assert plan(IPA(), 5)[0].objective is not None and plan(IPA(), 5)[0].stage is None


def test_resume_point_inside_a_segment_and_where_one_starts():
    segments = plan(HGDPO(), 9, rounds=2)  # starts 0, 3, 4, 6
    assert resume_point(segments, 0) == (0, (0, "easy"))  # a fresh run: no crossing into segment 0
    assert resume_point(segments, 2) == (0, (0, "easy"))
    # saved as segment 1 ended (step 4): the run is still in round 0's normal stage, so segment 2 starts round 1
    assert resume_point(segments, 4) == (2, (0, "normal"))
    # saved inside segment 2 (step 5): its round's data and reference came back with the checkpoint
    assert resume_point(segments, 5) == (2, (1, "normal"))
    assert resume_point(segments, 9) == (3, (1, "hard"))  # a finished run: nothing left
