"""Device resolution: what 'train.device' becomes, with and without a visible GPU."""

import pytest
import torch

from fmloop.core.errors import ConfigError
from fmloop.core.runtime import resolve_device


def test_auto_without_cuda_is_cpu():
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")


def test_cuda_always_gets_an_index():
    # torch.cuda.set_device(torch.device("cuda")) raises; the index must be filled in.
    assert resolve_device("auto", cuda_available=True, current_cuda=0) == torch.device("cuda", 0)
    assert resolve_device("cuda", cuda_available=True, current_cuda=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", cuda_available=True, world_size=4, local_rank=3, cuda_count=4) == torch.device(
        "cuda", 3
    )
    assert resolve_device("cuda:2", cuda_available=True, world_size=4, local_rank=3) == torch.device("cuda", 2)


def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="--train.device=cpu"):
        resolve_device("cuda", cuda_available=False)


def test_unknown_device_names_the_parameter():
    with pytest.raises(ConfigError, match="train.device"):
        resolve_device("tpu0", cuda_available=False)


def test_more_processes_than_gpus_is_a_clear_error():
    with pytest.raises(ConfigError, match="only 1 GPU"):
        resolve_device("auto", cuda_available=True, world_size=2, local_rank=1, cuda_count=1)
