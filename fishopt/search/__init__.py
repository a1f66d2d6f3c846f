"""Running studies: from a spec and options to trials in an Optuna storage.

``spec`` (TOML -> frozen specs), ``tuned`` (the tuned optimizer protocol and its spaces),
``space`` (the only ``trial.suggest_*``), ``context`` (data, split and tensors a trial trains
on), ``objective`` (one trial: sample, train, record), ``samplers`` (sampler and pruner from the
spec), ``studies`` (finding studies, best trial, state tallies), ``session`` (options -> a ready
study), ``claim`` (the global budget), ``requeue`` (interrupted trials queued again), ``loop``
(the one trial loop, used by ``study``, ``worker`` and ``--jobs``), ``jobs`` (``--jobs N``
local worker processes), ``summary`` (per-group tallies for the CLI and the report) and
``doctor`` (stale trials and duplicate numbers). Storage itself is ``fishopt.storage``.
"""
