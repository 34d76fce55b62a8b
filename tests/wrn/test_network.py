"""wrn.network: the closed-form parameter count is the built module's, over many networks."""

import itertools

import torch

from wrn.config import ModelConfig
from wrn.model import WideResNet, count_parameters
from wrn.network import count_params, network_name


def test_count_params_is_the_modules_count_over_many_networks() -> None:
    networks = itertools.product((10, 16, 22, 28, 40), (1, 2, 5, 10))
    for (depth, width), classes in zip(networks, itertools.cycle((10, 100, 7)), strict=False):
        model = ModelConfig(depth=depth, width=width, num_classes=classes, first_dropout=0.1)
        with torch.device("meta"):  # counted, not allocated
            built = WideResNet.from_config(model)
        assert count_params(model) == count_parameters(built), network_name(depth, width)


def test_network_name() -> None:
    assert network_name(28, 10) == "WRN-28-10"
