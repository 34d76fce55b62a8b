"""Whether an accuracy is distinguishable from guessing: a study on too little data, or with a
batch too large for it, can score at chance (the first Fashion-MNIST study scored 0.002-0.066 on
10 classes) and the display should say so rather than rank it."""

from __future__ import annotations

import math

from optuna.trial import FrozenTrial

from study.records import recorded_config

AT_CHANCE = "at chance: within two standard errors of guessing, 1 / classes, or below"


def chance_level(num_classes: int) -> float:
    """The accuracy of a uniform guess (the splits are stratified, so each class's share)."""
    return 1.0 / num_classes


def at_chance(accuracy: float, num_classes: int, images: int) -> bool:
    """True when ``accuracy`` on ``images`` scored images is within two binomial standard errors
    of (or below) guessing: no evidence at about 95 % that the network learnt anything."""
    p = chance_level(num_classes)
    return accuracy <= p + 2.0 * math.sqrt(p * (1.0 - p) / max(images, 1))


def chance_note(accuracy: float, num_classes: int, images: int) -> str:
    """" (at chance: 10 classes guess 0.100)" when ``at_chance``, else ""."""
    if not at_chance(accuracy, num_classes, images):
        return ""
    return f" (at chance: {num_classes} classes guess {chance_level(num_classes):.3f})"


def trial_chance_note(trial: FrozenTrial) -> str:
    """``chance_note`` for a search trial's value, from its recorded classes and validation
    size ("" when it has no value or records neither)."""
    config = recorded_config(trial)
    classes, images = config.get("num_classes"), config.get("val_size")
    if trial.value is None or not classes or not images:
        return ""
    return chance_note(float(trial.value), int(classes), int(images))
