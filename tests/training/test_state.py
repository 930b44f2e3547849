"""The counts a checkpoint keeps."""

from prefopt.training.state import TrainState


def test_skipped_steps_in_a_row_reset_on_a_good_step():
    state = TrainState()
    for skipped in (True, True, False, True):
        state.count(skipped)
    assert (state.step, state.skipped, state.skipped_in_a_row) == (4, 3, 1)
