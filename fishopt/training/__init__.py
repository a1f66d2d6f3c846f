"""Training one network: ``model`` (the MLP builder), ``optim`` (the optimizer registry),
``train`` (the one training loop and its metrics) and ``hardware`` (what the CPU can do).

Nothing here knows about Optuna: a trial is plain data in, a ``TrainResult`` out.
"""
