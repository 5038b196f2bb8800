import numpy as np
import pytest
import torch

from fmloop.data.augment import ImageAugment, channel_stats


def _pixels(n=6, size=16, channels=3):
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, size, size, channels), dtype=np.uint8))


@pytest.mark.parametrize("policy", ["none", "light", "randaugment", "simclr"])
def test_policies_keep_shape_and_are_seeded(policy):
    aug = ImageAugment(policy, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    a = aug.views(_pixels(), torch.Generator().manual_seed(3))
    b = aug.views(_pixels(), torch.Generator().manual_seed(3))
    assert a.shape == (6, 3, 16, 16) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    if policy != "none":
        assert not torch.allclose(a, aug.views(_pixels(), torch.Generator().manual_seed(4)))


def test_none_policy_is_exact_normalisation():
    pixels = _pixels(channels=1)
    out = ImageAugment("none", mean=(0.5,), std=(0.25,)).views(pixels, torch.Generator())
    expected = (pixels.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_gives_soft_targets_that_sum_to_one(kind):
    aug = ImageAugment("none", mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=4, **{kind: 1.0})
    x, y = aug(_pixels(), torch.tensor([0, 1, 2, 3, 0, 1]), torch.Generator().manual_seed(0))
    assert y.shape == (6, 4)
    torch.testing.assert_close(y.sum(1), torch.ones(6))


def test_channel_stats():
    pixels = np.zeros((4, 2, 2, 1), np.uint8)
    pixels[:2] = 255
    mean, std = channel_stats(pixels)
    assert mean == [0.5] and abs(std[0] - 0.5) < 1e-6
