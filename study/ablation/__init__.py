"""The ablation behind ``python -m study.ablate``: plan (variants, path), runner, effects."""
