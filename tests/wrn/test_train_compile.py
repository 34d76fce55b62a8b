"""``compile=true`` across a study's trials in one process: compiling stays on, and trials of
one architecture reuse the graphs compiled for the first."""

from collections.abc import Callable

import pytest
import torch

from wrn.config import TrainConfig
from wrn.train import train


def counting_compile(monkeypatch: pytest.MonkeyPatch, compiled: list[int], calls: list[int]):
    """torch.compile with a backend like "eager" (fast, no C++ compiler) that counts the
    graphs it compiles (``compiled``) and the calls of a compiled graph (``calls[-1]``): a
    frame Dynamo gave up on (recompile limit hit) runs eagerly and is never counted."""

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
        compiled.append(len(gm.graph.nodes))

        def run(*args: object) -> object:
            calls[-1] += 1
            return gm.forward(*args)

        return run

    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda model, **kwargs: real_compile(model, backend=counting_backend)
    )


@pytest.mark.slow
def test_compile_stays_on_for_every_trial_of_a_study(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[int] = []
    calls: list[int] = []  # per trial: calls of a compiled graph
    counting_compile(monkeypatch, compiled, calls)
    torch._dynamo.reset()
    # each trial: a new model and another architecture (depth, dropout on or off), a train and
    # an eval graph: at 2 graphs an architecture, Dynamo's recompile limit of 8 is passed by
    # the fifth trial unless each new architecture starts with empty caches
    cfg = tiny_config.replace(epochs=1, compile=True, synthetic_train_size=300)
    try:
        for depth, dropout in ((10, 0.1), (16, 0.2), (10, 0.0), (22, 0.4), (16, 0.0)):
            calls.append(0)
            result = train(cfg.replace(depth=depth, dropout=dropout))
            assert 0.0 <= result.final_acc <= 1.0
    finally:
        torch._dynamo.reset()
    assert all(n > 0 for n in calls), calls


@pytest.mark.slow
def test_trials_of_one_architecture_reuse_the_compiled_graphs(
    tiny_config: TrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[int] = []
    calls: list[int] = []
    counting_compile(monkeypatch, compiled, calls)
    torch._dynamo.reset()
    cfg = tiny_config.replace(epochs=1, compile=True, synthetic_train_size=300)
    after: list[int] = []  # graphs compiled so far, after each trial
    try:
        # other per-trial scalars: dropout p (a buffer input of the graph), label smoothing
        for dropout, smoothing in ((0.3, 0.1), (0.1, 0.2), (0.25, 0.0)):
            calls.append(0)
            trial = cfg.replace(dropout=dropout, first_dropout=dropout / 2)
            train(trial.replace(label_smoothing=smoothing))
            after.append(len(compiled))
        calls.append(0)
        train(cfg.replace(depth=16))  # another architecture compiles its own
        after.append(len(compiled))
    finally:
        torch._dynamo.reset()
    assert after[0] >= 2 and after[1] == after[2] == after[0], after  # train and eval graphs
    assert after[3] > after[2]
    assert all(n > 0 for n in calls), calls
