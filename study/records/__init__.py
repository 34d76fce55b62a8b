"""What a study and a trial record, written down once: kinds, attribute keys, typed settings
and the shared queries. The only place that names a study or trial attribute.

Every ``study.*`` command reads and writes these names only through this package, so a study
made by one command reads the same in all the others (status, report, dashboard). Imports
nothing heavy (no torch): the commands' ``--help`` and input checks use it.

``keys`` (the names), ``settings`` (each study kind's settings, typed both ways), ``queries``
(over trials), ``commands`` (the command lines recorded on a study). What the display side
(dashboard, status, report) reads, typed:

- ``study_kind(user_attrs)``, ``source_study(user_attrs)``;
  ``derived_name(source, StudyKind.RERUN)`` is "NAME-rerun" (``ABLATION``: "NAME-ablation").
- ``SearchSettings.of(user_attrs) -> SearchSettings | None``: a search's settings; its
  ``space`` is a ``SearchSpace`` (``.name``, ``.params``, ``.recipe``, ``.search_epochs``,
  ``.description``; what an older record lacks reads as empty, 0 epochs); its ``data`` is a
  ``DataRecord`` (``.data_dir``, ``.identity``: kind, folder, image counts, fingerprint) or
  None for a study recorded before data records.
- ``AblationSettings.of(user_attrs)`` (``.base``, ``.base_trial``, ``.epochs``, ``.seeds``,
  ``.skipped``, ``.factors``, ``.path_target``, ``.planned_variants()``),
  ``ablation_path(user_attrs) -> list[PathStep]``, ``RerunSettings.of(user_attrs)``,
  ``RerunSummary.all(user_attrs)`` (a search's rerun results: ``.trial``, ``.epochs``,
  ``.runs``, ``.mean``, ``.std``); ``rerun_points(search, reruns)`` (each rerun trial's
  final-epoch test accuracy per seed at the longest length), ``chosen_rerun(points, best)``
  (the one chosen on validation), ``seed_result(accs)`` (the "mean ± std over n seeds" text).
- ``tally(trials, direction) -> Tally``: trials by state (``.by_state``, real failures only;
  ``.interrupted``: attempts queued to resume, ``.queued``: those whose retry still waits) and
  ``.best``; ``Tally.describe(states, empty)`` is the "3 complete, 1 pruned" text.
- Trial readers: ``recorded_config(t)``, ``recorded_epochs(t)``, ``trial_seconds(t)`` (the
  compute it consumed: GPU seconds on CUDA, CPU seconds on CPU, wall clock where unmeasured;
  ``compute_unit(ts)`` names it), ``wall_seconds(t)``, ``epoch_compute(t)``, ``is_measured(t)``,
  ``is_random_draw(t)`` (TPE's startup or the random sampler), ``is_rejected_draw(t)`` (over
  the cost cap, drawn again, never trained; ``Tally.rejected`` counts them),
  ``trial_devices(ts)``, ``device_kind(devices)``, ``is_failure(t)``, ``best_trial(ts)``,
  ``top_trials(ts, k)``; ``TrialAttrs.NUM_PARAMS`` and the other keys for single values.
- Ablation variant names: ``BASE_VARIANT``, ``off_variant(factor)``,
  ``path_variant(step, key)``, ``is_path_variant(name)``, ``PATH_START``.
- ``invocations(user_attrs)``: the commands run on a study.
- ``dropped_trials(user_attrs)``, ``dropped_text(user_attrs)``: the configurations the retry
  limit dropped ("1 configuration dropped after 4 failed attempts (trial 7)").
- ``--pruner promote``: ``configuration_of(t)`` (its first attempt), ``configurations(ts)``
  (those counted towards ``--trials``), ``latest_trials(ts)``, ``paused_at(t)``,
  ``promoted_from(t)``, ``promotion_counts(ts) -> PromotionCounts | None`` (``.describe()``:
  "6 configurations, 2 paused, 3 promoted").
"""

from study.records.commands import (
    COMMANDS_KEPT,
    Invocation,
    invocations,
    masked_argv,
    record_command,
)
from study.records.keys import (
    StudyAttrs,
    StudyKind,
    TrialAttrs,
    derived_name,
    dropped_text,
    dropped_trials,
    recorded_config,
    recorded_epochs,
    source_study,
    study_kind,
)
from study.records.promotions import (
    PromotionCounts,
    configuration_of,
    configurations,
    latest_trials,
    paused_at,
    promoted_from,
    promotion_counts,
)
from study.records.queries import (
    STATE_NAMES,
    Tally,
    best_trial,
    compute_unit,
    device_kind,
    epoch_compute,
    failures,
    is_failure,
    is_measured,
    is_random_draw,
    is_rejected_draw,
    require_study,
    study_names,
    tally,
    top_trials,
    trial_devices,
    trial_seconds,
    wall_seconds,
)
from study.records.reruns import (
    RerunPoint,
    chosen_rerun,
    pooled_seed_std,
    rerun_points,
    seed_result,
)
from study.records.settings import (
    BASE_VARIANT,
    PATH_START,
    SAMPLER_STARTUP_TRIALS,
    SAMPLERS,
    AblationSettings,
    PathStep,
    RerunRun,
    RerunSettings,
    RerunSummary,
    SearchSettings,
    ablation_path,
    ablation_run_key,
    is_path_variant,
    mark_study,
    off_variant,
    path_variant,
    record_ablation_path,
    rerun_run_key,
    space_from_dict,
)

__all__ = [
    "BASE_VARIANT",
    "COMMANDS_KEPT",
    "PATH_START",
    "SAMPLERS",
    "SAMPLER_STARTUP_TRIALS",
    "STATE_NAMES",
    "AblationSettings",
    "Invocation",
    "PathStep",
    "PromotionCounts",
    "RerunPoint",
    "RerunRun",
    "RerunSettings",
    "RerunSummary",
    "SearchSettings",
    "StudyAttrs",
    "StudyKind",
    "Tally",
    "TrialAttrs",
    "ablation_path",
    "ablation_run_key",
    "best_trial",
    "chosen_rerun",
    "compute_unit",
    "configuration_of",
    "configurations",
    "derived_name",
    "device_kind",
    "dropped_text",
    "dropped_trials",
    "epoch_compute",
    "failures",
    "invocations",
    "is_failure",
    "is_measured",
    "is_path_variant",
    "is_random_draw",
    "is_rejected_draw",
    "latest_trials",
    "mark_study",
    "masked_argv",
    "off_variant",
    "path_variant",
    "paused_at",
    "pooled_seed_std",
    "promoted_from",
    "promotion_counts",
    "record_ablation_path",
    "record_command",
    "recorded_config",
    "recorded_epochs",
    "require_study",
    "rerun_points",
    "rerun_run_key",
    "seed_result",
    "source_study",
    "space_from_dict",
    "study_kind",
    "study_names",
    "tally",
    "top_trials",
    "trial_devices",
    "trial_seconds",
    "wall_seconds",
]
