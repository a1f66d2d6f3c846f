"""Everything that knows SQL and Optuna's storage internals; imports nothing from ``search``.

``connect`` (a storage URL -> fishopt's ``Storage``, with pool, timeouts and masked errors),
``rdb`` (the ``Storage`` class: Optuna's RDB storage with one-statement writes and cached reads),
``retry`` (calls retried across a dropped connection), ``statements`` (the per-trial SQL, built
once), ``owned`` (the worker's own trials, read from memory), ``sqlite`` (SQLite settings and
when not to use it), ``locks`` (the study-wide claim lock), ``heartbeats`` (heartbeats, dead
workers' trials, a lost storage), ``reads`` (one-query reads of a study) and ``fence`` (every
private Optuna name fishopt uses, listed and checked by a test).
"""
