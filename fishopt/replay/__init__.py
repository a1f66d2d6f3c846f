"""Replay: searches run on the recorded curves of a finished grid study, without training.

``table`` turns a grid study with repeats into a table of curves, ``run`` replays Optuna's own
samplers and pruners on it, ``arms`` names the ways to search that are compared (and the one
``studies/full.toml`` uses), ``budget`` turns replays into success and regret against budget,
``answer`` is what ``fishopt replay STUDY`` prints, and ``outlook`` says, for a search study,
whether more trials are likely to help.
"""
