"""Running studies: from a spec and options to trials in an Optuna storage.

``spec`` (TOML -> frozen specs), ``space`` (the only ``trial.suggest_*``), ``objective`` (one
trial: sample, train, record), ``samplers`` (sampler and pruner from the spec), ``studies``
(creating, resuming and looking up studies), ``session`` (options -> a ready study), ``loop``
(the one trial loop, used by ``study``, ``worker`` and ``--jobs``), ``claim`` (the global
budget), ``liveness`` (heartbeats and stale trials), ``storage`` (URL -> storage),
``summary`` (per-group tallies for the CLI and the report) and ``doctor``.
"""
