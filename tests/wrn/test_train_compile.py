"""``compile=true`` keeps compiling trial after trial, as a study runs them in one process."""

from collections.abc import Callable

import pytest
import torch

from wrn.config import TrainConfig
from wrn.train import train


@pytest.mark.slow
def test_compile_stays_on_for_every_trial_of_a_study(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled_calls: list[int] = []  # per trial: calls of a compiled graph

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        # like backend="eager" (fast, no C++ compiler), but counts the graph's calls: a frame
        # that Dynamo gave up on (recompile limit hit) runs eager and never gets here
        def run(*args: object) -> object:
            compiled_calls[-1] += 1
            return gm.forward(*args)

        return run

    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda model, **kwargs: real_compile(model, backend=counting_backend)
    )
    torch._dynamo.reset()
    # each trial: a new model, another dropout (guarded as a constant), a train and an eval
    # graph (grad mode differs), a last eval batch of 36 of 64 images: at 2 or 3 graphs a
    # trial, Dynamo's recompile limit of 8 is passed by the fifth trial at the latest
    cfg = tiny_config.replace(epochs=1, compile=True, synthetic_train_size=300)
    try:
        for dropout in (0.1, 0.2, 0.3, 0.4, 0.5):
            compiled_calls.append(0)
            result = train(cfg.replace(dropout=dropout))
            assert 0.0 <= result.final_acc <= 1.0
    finally:
        torch._dynamo.reset()
    assert all(n > 0 for n in compiled_calls), compiled_calls
