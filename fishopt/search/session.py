"""From options to a ready study: the one setup every command that runs or reads trials uses.

``open_session`` resolves settings, opens (and so checks) the storage before any data is read,
finds the spec (a file, or the one recorded in the study), loads the data, builds the trial
context, creates or resumes the study, takes its budget lock and queues interrupted trials again.
``fishopt study``, ``fishopt worker``, ``--jobs`` children and the benchmarks all come through it;
``open_existing`` is the read-only variant ``export-best`` uses.

A study in storage remembers what it was created from (data fingerprint, split, spec
fingerprint); resuming it with anything incompatible is refused, because mixing trials trained on
different data or epochs would make every comparison in it meaningless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch

from fishopt import config, data
from fishopt.errors import FishoptError
from fishopt.notes import save_study_note
from fishopt.search import claim, precision, requeue, samplers, studies
from fishopt.search import spec as specs
from fishopt.search.context import Context, make_tensors, split_for
from fishopt.search.options import Options
from fishopt.storage import locks
from fishopt.storage.connect import open_storage
from fishopt.storage.rdb import Storage
from fishopt.storage.sqlite import sqlite_warnings
from fishopt.training.hardware import set_threads

Log = Callable[[str], None]


@dataclass(frozen=True)
class Progress:
    """How a caller watches setup: log lines and the two slow steps' progress."""

    log: Log = lambda _message: None
    generating: data.Progress | None = None
    decoding: data.Progress | None = None


@dataclass
class Session:
    """A study ready for trials, and everything that was resolved on the way."""

    opts: Options
    settings: config.Settings
    heartbeat: config.Heartbeat
    storage: Storage
    ctx: Context
    study: optuna.Study
    lock: locks.Lock
    cache_hit: bool = False
    load_seconds: float = 0.0
    requeued: int = 0
    warnings: list[str] = field(default_factory=list)
    precision: str = "auto"  # the study's, recorded when it started (search.precision)

    @property
    def spec(self) -> specs.StudySpec:
        return self.ctx.spec

    @property
    def budget(self) -> int | None:
        return claim.budget(self.study, self.spec)


# ------------------------------------------------------------------------------- resolving


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise FishoptError("--device cuda: no CUDA device is available to torch here")
    if name not in ("cpu", "cuda"):
        raise FishoptError(f"--device {name}: expected auto, cpu or cuda")
    return name


def spec_for(opts: Options, storage: Storage) -> specs.StudySpec:
    """The spec file if there is one; else the spec recorded in the study in storage."""
    return spec_and_note(opts, storage)[0]


def spec_and_note(opts: Options, storage: Storage) -> tuple[specs.StudySpec, str | None]:
    """The spec to run, and a note when it is not the file's.

    A study made from one of fishopt's own specs keeps the spec it was made with: those change
    between versions (the full study's pruner did, on the evidence of bench figure 4), and a
    study in progress must neither be refused nor switch its sampler half-way.
    """
    note = None
    try:
        base = specs.load(opts.study)
    except FishoptError as not_a_file:
        try:
            stored = optuna.load_study(study_name=opts.name or opts.study, storage=storage)
        except KeyError:
            raise not_a_file from None
        base = recorded_spec(stored)
    else:
        kept = _kept_spec(storage, opts.name or base.name) if _bundled(opts.study) else None
        # What a flag can set (--epochs, --seed, --image-size) is not the file changing.
        as_kept = (
            base.with_overrides(epochs=kept.epochs, seed=kept.seed, image_size=kept.image_size)
            if kept is not None
            else base
        )
        if kept is not None and kept.fingerprint() != as_kept.fingerprint():
            base = kept
            note = (
                f"study {opts.name or base.name!r} keeps the spec it was created with "
                f"(sampler {kept.sampler['name']}, pruner {kept.pruner['name']}); fishopt's "
                f"{opts.study}.toml has changed since: a new --name runs the new one"
            )
    spec = base.with_overrides(
        epochs=opts.epochs,
        seed=opts.seed,
        image_size=data.parse_size(opts.image_size) if opts.image_size else None,
    )
    return spec, note


def _bundled(study: str) -> bool:
    """Whether ``study`` names one of the specs shipped with fishopt (not a user's file)."""
    if study.endswith(".toml"):
        return False
    try:
        return specs.find(study).parent.resolve() == specs.builtin_dir().resolve()
    except FishoptError:
        return False


def _kept_spec(storage: Storage, name: str) -> specs.StudySpec | None:
    """The spec recorded by the study ``name`` in storage, if it exists and fishopt made it."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    identity = storage.get_study_user_attrs(study_id).get(studies.ATTR)
    return specs.StudySpec.from_dict(identity["spec"]) if identity else None


def recorded_spec(st: optuna.Study) -> specs.StudySpec:
    identity = st.user_attrs.get(studies.ATTR)
    if not identity:
        raise FishoptError(f"study {st.study_name!r} was not created by fishopt (no spec recorded)")
    return specs.StudySpec.from_dict(identity["spec"])


def build_context(
    spec: specs.StudySpec,
    source: data.SourceSpec,
    settings: config.Settings,
    *,
    device: str = "cpu",
    strict: bool = False,
    progress: Progress = Progress(),
) -> tuple[Context, bool, float]:
    """Data, split and tensors for ``spec``; also whether the cache was hit and the seconds."""
    t0 = time.perf_counter()
    ds, hit = data.load(
        source,
        settings.cache_dir,
        spec.image_size,
        strict=strict,
        progress=progress.decoding,
        generate_progress=progress.generating,
    )
    seconds = time.perf_counter() - t0
    split = split_for(spec, ds, spec.base_split_seed, settings.cache_dir)
    tensors = make_tensors(ds, split, device)
    return Context(spec, ds, split, tensors, device, settings.cache_dir), hit, seconds


# ----------------------------------------------------------------------------- the study


def study_identity(ctx: Context) -> dict:
    return {
        "spec": ctx.spec.to_dict(),
        "spec_fingerprint": ctx.spec.fingerprint(),
        "data_fingerprint": ctx.dataset.fingerprint,
        "data_source": ctx.dataset.source,
        "classes": list(ctx.dataset.classes),
        "preprocessing": ctx.dataset.preprocessing,
        "split": ctx.split.describe(),
        "in_features": ctx.in_features,
        claim.GRID_ATTR: "distinct",
    }


def open_study(ctx: Context, storage: Storage, name: str, distributed: bool = True) -> optuna.Study:
    """Create the study, or load it if it exists and was made from the same data and spec.

    ``distributed`` samplers are seeded independently per process, so parallel workers do not
    all propose the same parameters; a single process keeps the spec's seed.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        load_if_exists=True,
        direction="maximize",
        sampler=samplers.make_sampler(ctx.spec, distributed),
        pruner=samplers.make_pruner(ctx.spec),
    )
    identity = study_identity(ctx)
    stored = study.user_attrs.get(studies.ATTR)
    if stored is None:
        study.set_user_attr(studies.ATTR, identity)
        study.set_metric_names(["valid_macro_f1"])
        save_study_note(study, identity)  # the dashboard shows what this study asks and ran on
        return study
    if stored.get("data_fingerprint") != identity["data_fingerprint"]:
        raise FishoptError(
            f"study {name!r} was run on other data (fingerprint {stored.get('data_fingerprint')},"
            f" now {identity['data_fingerprint']}); use a new study name, e.g. --name {name}-2"
        )
    if (
        stored.get("spec_fingerprint") != identity["spec_fingerprint"]
        or stored.get("split") != identity["split"]
    ):
        raise FishoptError(
            f"study {name!r} was run with a different spec or split (epochs, seed, space, "
            f"sampler...); use a new study name, e.g. --name {name}-2"
        )
    if not claim.distinct_grid(stored) and ctx.spec.sampler["name"] == "grid":
        # Made before duplicate grid points were dropped: its trials recorded full-grid ids.
        study.sampler = samplers.make_sampler(ctx.spec, distributed, distinct_grid=False)
    return study


def open_session(
    opts: Options, progress: Progress = Progress(), *, distributed: bool = True
) -> Session:
    """Everything from options to a study ready for ``loop.run``.

    The storage is opened first, so a wrong URL is reported before minutes of decoding.
    """
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    settings = config.resolve(
        storage=opts.storage, cache_dir=opts.cache_dir, artifacts_dir=opts.artifacts_dir
    )
    hb = config.resolve_heartbeat(opts.heartbeat_interval, opts.grace_period, opts.max_retry)
    storage = open_storage(settings.storage, heartbeat=hb)
    spec, kept = spec_and_note(opts, storage)
    source, how = data.choose_source(opts.data, settings.data)
    progress.log(how)
    ctx, hit, seconds = build_context(
        spec, source, settings, device=device, strict=opts.strict, progress=progress
    )
    name = opts.name or spec.name
    st = open_study(ctx, storage, name, distributed)
    lock = locks.open_lock(storage, settings.storage, name)
    lock.acquire()
    try:
        if opts.n_trials is not None:
            claim.set_budget(st, opts.n_trials)
        requeued = requeue.requeue_interrupted(st)
        running = studies.tally(st.get_trials(deepcopy=False)).running
        trains_in, precision_notes = precision.settle(st, spec, device)
    finally:
        lock.release()
    notes = [*([kept] if kept else []), *precision_notes]
    notes += sqlite_warnings(settings.storage, running + 1)
    if ctx.dataset.not_cached:
        notes.append(f"decoded images not cached: {ctx.dataset.not_cached}; decoded again next run")
    if not settings.storage.exact_lock:
        notes.append(
            "this storage has no cross-process lock; the budget may be overshot by up to "
            "workers - 1 trials. PostgreSQL or a local SQLite file avoid this."
        )
    return Session(
        opts, settings, hb, storage, ctx, st, lock, hit, seconds, requeued, notes, trains_in
    )


def prepare_data(opts: Options, storage: Storage, log: Log) -> None:
    """Generate and decode the study's data once, into the cache, before ``--jobs`` children
    start: each child then reads the cache instead of generating the same set at once."""
    settings = config.resolve(cache_dir=opts.cache_dir)
    spec = spec_for(opts, storage)
    source, how = data.choose_source(opts.data, settings.data)
    log(how)
    data.load(source, settings.cache_dir, spec.image_size, strict=opts.strict)


def open_existing(
    name: str,
    settings: config.Settings,
    data_flag: str | None = None,
    check: Callable[[optuna.Study], object] | None = None,
) -> tuple[optuna.Study, Context]:
    """A finished or running study and its data, for reading (export): nothing is created.

    ``check`` looks at the study before any data is read (is there anything to export?). The
    data are the ones the study recorded unless ``data_flag`` says where they moved; data whose
    fingerprint differs from the study's are refused.
    """
    storage = open_storage(settings.storage, heartbeat=False)
    st = studies.load(name, storage, settings.storage)
    if check is not None:
        check(st)
    spec = recorded_spec(st)
    identity = st.user_attrs[studies.ATTR]
    recorded = identity.get("data_source", "")
    text = data_flag or ("digits" if recorded == "sklearn.datasets.load_digits" else recorded)
    if not data_flag and not (text == "digits" or Path(text).exists()):
        raise FishoptError(
            f"study {st.study_name!r} was run on {recorded}, which is not there any more; "
            "pass --data with the same images"
        )
    ctx, _hit, _seconds = build_context(spec, data.parse_source(text), settings)
    if ctx.dataset.fingerprint != identity["data_fingerprint"]:
        raise FishoptError(
            f"--data {text}: fingerprint {ctx.dataset.fingerprint} differs from study "
            f"{st.study_name!r}'s {identity['data_fingerprint']}; pass the images it ran on"
        )
    return st, ctx
