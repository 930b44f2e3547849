"""PreferenceDataset validation: each bad input is one error naming the dataset, field and row."""

import pytest
import torch

from prefopt.data import PreferenceDataset
from prefopt.errors import ConfigError

W, L = torch.zeros(3, 3, 4, 4), torch.ones(3, 3, 4, 4)


@pytest.mark.parametrize("kwargs, message", [
    ({"winner": W[:0]}, "empty"),
    ({"winner": W, "loser": L[:2]}, "loser has 2 rows"),
    ({"winner": W, "loser": L[:, :2]}, "loser shape"),
    ({"winner": W.clone().index_fill_(0, torch.tensor([1]), float("nan"))}, "winner is not finite at row 1"),
    ({"winner": W, "loser": L, "reward_w": torch.ones(3)}, "come together"),
    ({"winner": W, "loser": L, "reward_w": torch.ones(3, 1), "reward_l": torch.zeros(3, 1)}, "shape (3,)"),
    ({"winner": W, "loser": L, "reward_w": torch.tensor([1.0, 90.0, 1.0]), "reward_l": torch.zeros(3)}, "row 1 is 90.000, outside"),
    ({"winner": W, "loser": L, "reward_w": torch.tensor([1.0, 0.5, 1.0]), "reward_l": torch.tensor([0.0, 0.5, 0.0])}, "row 1 has reward_w <= reward_l"),
])
def test_bad_input_names_the_culprit(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PreferenceDataset(name="pairs.jsonl", **kwargs)


def test_good_pairs_are_items():
    data = PreferenceDataset(W, L, torch.ones(3), torch.zeros(3))
    assert data.paired and len(data) == 3 and data.sample_shape == (3, 4, 4)
    assert set(data[0]) == {"winner", "loser", "reward_w", "reward_l"}


def test_condition_tensors_survive_a_checkpoint_of_the_round():
    """A latent model's dataset carries nested condition tensors (SDXL's added_cond_kwargs); a
    round's checkpoint stores them flat and resume rebuilds them, item by item."""
    from prefopt.checkpoints import pack_round, unpack_round

    cond = {"encoder_hidden_states": torch.randn(3, 4, 8),
            "added_cond_kwargs": {"text_embeds": torch.randn(3, 8), "time_ids": torch.arange(18.).view(3, 6)}}
    dataset = PreferenceDataset(torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), cond=cond)
    packed = pack_round({None: dataset})
    assert "round/None/cond.added_cond_kwargs.time_ids" in packed
    rebuilt = unpack_round(packed, {None: dataset})[None]
    item = rebuilt[2]
    assert torch.equal(item["cond"]["added_cond_kwargs"]["time_ids"], torch.arange(12., 18.))
    assert torch.equal(item["cond"]["encoder_hidden_states"], cond["encoder_hidden_states"][2])
    assert torch.equal(rebuilt.fields["loser"], dataset.fields["loser"])
