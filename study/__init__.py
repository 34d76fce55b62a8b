"""The Optuna side of the harness: studies, trials, storage and the command-line tools."""
