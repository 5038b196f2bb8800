import pytest
import torch
from torch import nn

from fmloop.train.optim import build_scheduler, lr_multiplier, param_groups


def test_no_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.shape for p in decay["params"]} == {torch.Size([4, 4]), torch.Size([2, 4])}
    assert len(no_decay["params"]) == 4  # two biases + LayerNorm weight and bias


def test_frozen_parameters_are_left_out():
    model = nn.Linear(3, 3)
    model.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == 1


def test_warmup_then_cosine_to_floor():
    assert lr_multiplier(0, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_multiplier(9, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_multiplier(55, 10, 100, "cosine", min_ratio=0.1) == pytest.approx(0.55)
    assert lr_multiplier(100, 10, 100, "cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_multiplier(55, 10, 100, "linear") == pytest.approx(0.5)


def test_scheduler_drives_the_optimizer():
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0)
    sched = build_scheduler(opt, warmup=2, total=4, schedule="linear")
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.5, 1.0, 1.0, 0.5])
