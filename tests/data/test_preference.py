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
