import pytest
import torch

from wrn.config import ConfigError, ModelConfig
from wrn.model import WideResNet, count_parameters


@pytest.mark.parametrize(
    ("depth", "width", "expected"),
    [(28, 10, 36_536_884), (16, 8, 11_007_540), (10, 1, 83_700)],
)
def test_parameter_count_with_100_classes(depth: int, width: int, expected: int) -> None:
    with torch.device("meta"):
        model = WideResNet(depth, width, num_classes=100)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(("depth", "width"), [(10, 1), (16, 2), (22, 1)])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_shapes(depth: int, width: int, num_classes: int) -> None:
    model = WideResNet(depth, width, dropout=0.3, first_dropout=0.1, num_classes=num_classes)
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (3, 64 * width, 8, 8)
    assert model.forward_head(features).shape == (3, num_classes)
    assert model(x).shape == (3, num_classes)


@pytest.mark.parametrize("depth", [0, 4, 11, 27, 29])
def test_bad_depth_is_a_clear_error(depth: int) -> None:
    with pytest.raises(ConfigError, match="6n\\+4"):
        WideResNet(depth, 1)
    with pytest.raises(ConfigError, match="depth"):
        ModelConfig(depth=depth)


def test_blocks_have_dropout_between_convs_and_projection_shortcuts() -> None:
    model = WideResNet(16, 2, dropout=0.25, first_dropout=0.1)
    assert isinstance(model.stem_dropout, torch.nn.Dropout) and model.stem_dropout.p == 0.1
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 6  # (16 - 4) / 6 = 2 per stage
    assert all(isinstance(b.dropout, torch.nn.Dropout) and b.dropout.p == 0.25 for b in blocks)
    # the first block of each stage changes channels (and stride), the second keeps them
    assert [b.shortcut is not None for b in blocks] == [True, False] * 3
    assert blocks[2].conv1.stride == (2, 2) and blocks[2].shortcut.kernel_size == (1, 1)


def test_no_dropout_modules_when_off() -> None:
    model = WideResNet(10, 1, dropout=0.0, first_dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())


def test_kaiming_init_scale() -> None:
    torch.manual_seed(0)
    conv = WideResNet(16, 8).stages[1][1].conv1  # 128 -> 128 channels, 3x3
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


@pytest.mark.parametrize("position", ["between", "after"])
def test_dropout_position(position: str) -> None:
    from wrn.model import BasicBlock

    block = BasicBlock(4, 4, 1, 0.5, position).train()
    x = torch.randn(2, 4, 8, 8)
    torch.manual_seed(0)
    out = block(x)
    torch.manual_seed(0)
    drop = torch.nn.functional.dropout
    mid = torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x)))))
    if position == "between":  # the WRN paper's code
        expected = block.conv2(drop(mid, 0.5)) + x
    else:  # after the second conv, before the residual add
        expected = drop(block.conv2(mid), 0.5) + x
    assert torch.allclose(out, expected, atol=1e-6)
    model = WideResNet.from_config(ModelConfig(depth=10, width=1, dropout_position=position))
    assert all(b.dropout_after == (position == "after") for b in model.stages.modules()
               if isinstance(b, BasicBlock))


def test_dropout_p_is_an_input_of_the_compiled_graph_not_a_constant() -> None:
    """Another p reuses the graph (a study's trials differ in p); eager is F.dropout; both
    keep each value with probability 1 - p and scale it by 1 / (1 - p)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from wrn.model import Dropout

    x = torch.ones(64, 16, 32, 32)
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    try:
        for p in (0.3, 0.1):
            layer = Dropout(p).train()
            assert "p_tensor" not in layer.state_dict()  # checkpoints keep their keys
            torch.manual_seed(0)
            eager = layer(x)
            torch.manual_seed(0)
            assert torch.equal(eager, torch.nn.functional.dropout(x, p, training=True))
            compiled = torch.compile(layer, backend=counter, fullgraph=True)(x)
            for out in (eager, compiled):
                kept = out != 0
                assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)
                assert torch.allclose(out[kept], torch.tensor(1 / (1 - p)))
    finally:
        torch._dynamo.reset()
    assert counter.frame_count == 1
    assert torch.equal(Dropout(0.5).eval()(x), x)
