import pytest
import torch

from prefopt.core import per_sample_error


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 5, 4, 4)])
def test_no_weights_and_unit_weights_are_plain_mse(shape):
    prediction, target = torch.randn(shape), torch.randn(shape)
    plain = torch.stack([((prediction[i] - target[i]) ** 2).mean() for i in range(shape[0])])
    torch.testing.assert_close(per_sample_error(prediction, target), plain)
    ones = torch.ones(shape[0], 1, *shape[2:])
    torch.testing.assert_close(per_sample_error(prediction, target, ones), plain)


def test_region_weights_by_hand():
    prediction = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]]])  # squared errors 1 and 9
    weights = torch.tensor([[[[1.0, 10.0]]]])  # HALO-style: lambda = 10 on the second pixel
    assert per_sample_error(prediction, target, weights).item() == pytest.approx((1 * 1 + 10 * 9) / 11)


def test_video_weights_per_frame():
    prediction = torch.zeros(1, 1, 2, 1, 1)
    target = torch.tensor([1.0, 2.0]).view(1, 1, 2, 1, 1)  # frame errors 1 and 4
    weights = torch.tensor([1.0, 3.0]).view(1, 1, 2, 1, 1)
    assert per_sample_error(prediction, target, weights).item() == pytest.approx((1 + 3 * 4) / 4)
