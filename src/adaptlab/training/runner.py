"""One run, end to end: validate, prepare, train, measure, save -- atomically.

Everything the user can get wrong (config, data, backbone) is checked before a
folder is created. The run is written into ``<output>.partial`` and renamed to
``<output>`` only when complete, so a run folder is either whole or absent; a
killed run leaves its ``.partial`` folder with a checkpoint that ``--resume``
continues from.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig, TrainConfig, dump_config, load_config
from ..data.augment import augmented_rows, check_augment
from ..data.task import TaskData
from ..errors import AdaptlabError
from ..eval.forgetting import Probe
from ..eval.measure import PeakMemory, folder_bytes, versions
from ..eval.metrics import lean
from ..models.adapted import adapted_modules
from ..models.adapted import summary as adapted_summary
from ..models.backbones import Backbone, load_backbone
from ..models.modeling import count_parameters
from ..serve.generator import Generator
from ..serve.predict import load as open_run
from ..serve.modelcard import artifact_kind, model_card
from ..strategies.base import Task, get_strategy, hook, save_pretrained, supported, answers_needed
from ..tasks import get_task_type
from .folders import cleanup_on_failure as _cleanup_on_failure
from .folders import complete as _complete
from .folders import exclusive, finite, output_folder, partial_folder
from .folders import is_main_process as _is_main_process
from .loop import fit, score
from .phases import ordered, span
from .regularize import check as check_regularizers
from .run_metrics import Rows, Trained, cost_metrics, kept_scores, run_metrics, score_metrics
from .tracking import Trackers, check_trackers, experiment_of

log = logging.getLogger("adaptlab")

FALLBACK_TRAIN = {"epochs": 3, "lr": 5e-5, "schedule": "linear"}


@dataclass
class Setup:
    """Validated inputs shared by every strategy of a comparison."""

    data: TaskData
    backbone: Backbone
    train_rows: list[dict]
    eval_rows: list[dict]
    extra_eval_rows: dict[str, list[dict]] = field(default_factory=dict)
    """Tokenised further evaluation sets (``data.extra_evals``), scored after training."""
    val_rows: list[dict] = field(default_factory=list)
    """Tokenised validation split (carved from training), where the best epoch is chosen; may be empty."""
    task_type: Any = None
    """The task type (``adaptlab.tasks``) the data was read as; classification if None."""
    load_seconds: float = 0.0
    """Wall time to read the data, load the backbone and tokenise (once for every strategy of a comparison)."""

    def __post_init__(self) -> None:
        if self.task_type is None:
            from ..tasks import get_task_type

            self.task_type = get_task_type("classification")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    config: RunConfig
    module: torch.nn.Module | None = field(default=None, repr=False)
    """The trained module (best weights), when the run happened in this process."""


def resolve_train(cfg: RunConfig, task_type: Any = None) -> TrainConfig:
    """Fill what the user left unset: ``auto`` for the learning rate and epochs (``lr_find.py``, the loop's
    ``plan``) where the strategy allows it, the strategy's recommended values for the rest (its defaults for
    the task type first: ``train_defaults_for[task]``), the task type's own (``train_defaults``: a generative
    task's batch size), and the task's primary metric."""
    from ..tasks import get_task_type

    task_type = task_type or get_task_type(cfg.data.task or "classification")
    cls = get_strategy(cfg.strategy.name)
    own = cls.train_defaults_for.get(task_type.name, {})
    defaults = {**FALLBACK_TRAIN, **task_type.train_defaults, **cls.train_defaults, **own, **dict.fromkeys(cls.auto, "auto"),
                "metric": task_type.default_metric}
    unset = {k: v for k, v in defaults.items() if k not in cfg.train.model_fields_set or getattr(cfg.train, k) is None}
    resolved = cfg.train.model_copy(update=unset)
    if resolved.metric not in task_type.metrics:
        raise AdaptlabError(f"train.metric '{resolved.metric}' is not a metric of task {task_type.name}; "
                            f"choose from: {', '.join(task_type.metrics)}")
    return resolved


def make_setup(cfg: RunConfig, root: Path | None = None) -> Setup:
    """Load and validate data and backbone; tokenise once (``root``: where ``@stage`` backbones live)."""
    from ..models.backbones import resolve_ref

    started = time.perf_counter()
    task_type, table = resolve_task(cfg.data)
    data = task_type.load(cfg.data, split_seed(cfg), table)
    backbone = load_backbone(resolve_ref(cfg.backbone, root))
    task_type = task_type.configure(cfg, backbone)
    n = input_length(cfg.data, backbone)

    def rows(split: Any) -> list[dict]:
        return task_type.encode(split, backbone, cfg.data, n) if split is not None else []

    extra = {name: rows(split) for name, split in data.extra_evals.items()}
    train = task_type.training_rows(rows(data.train), n)
    return Setup(data, backbone, train, rows(data.eval), extra, rows(data.validation), task_type,
                 load_seconds=time.perf_counter() - started)


def split_seed(cfg: RunConfig) -> int:
    """The seed the data's splits and samples are drawn with: ``data.split_seed``, else ``train.seed``."""
    return cfg.data.split_seed if cfg.data.split_seed is not None else cfg.train.seed


def resolve_task(data: Any) -> tuple[Any, Any]:
    """The task type (``data.task``, or told from the training table's columns) and that table when read."""
    from ..data.task import load_table
    from ..tasks import detect_task, get_task_type

    if data.task is not None:
        return get_task_type(data.task), None
    table = load_table(data.train, data.encoding)
    return detect_task(table.columns, data, table.source), table


def input_length(data: Any, backbone: Backbone) -> int:
    """``data.max_length``, within what the backbone's position table holds.

    Longer inputs fail deep inside the forward pass. A length the user chose is an error to name;
    the default is quietly cut to the backbone's limit.
    """
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return data.max_length
    if backbone.config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # positions start after the padding index
    if data.max_length <= limit:
        return data.max_length
    if "max_length" in data.model_fields_set:
        raise AdaptlabError(f"data.max_length={data.max_length} is longer than backbone {backbone.name} can read ({limit} positions); "
                            f"use --set data.max_length={limit} or less")
    return limit


def train(
    recipe: str | Path | dict | RunConfig | None = None,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    resume: bool = False,
    **fields: Any,
) -> RunResult:
    """Train one strategy; return the finished run folder and its metrics (``adaptlab.train`` also runs
    recipes with stages: :func:`adaptlab.api.train`).

    ``fields`` are settings by name: ``strategy="lora"``, ``backbone=...``,
    ``data="reviews.csv"``, ``eval_data=...``, ``output=...``, or any dotted key
    with ``__`` for the dot (``train__lr=3e-4``); ``overrides`` takes dotted keys
    (``{"train.lr": 3e-4}`` or ``["train.lr=3e-4"]``).
    """
    cfg = load_config(recipe, {**fields_to_overrides(fields), **_as_dict(overrides)})
    out = output_folder(cfg, resume)
    with exclusive(out):
        output_folder(cfg.model_copy(update={"output": str(out)}), resume)  # again, now that no other run can create it
        return run_one(cfg, make_setup(cfg, out.parent), out, resume=resume)


ALIASES = {"data": "data.train", "eval_data": "data.eval"}


def fields_to_overrides(fields: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the Python API -> dotted config keys."""
    out = {}
    for key, value in fields.items():
        if value is not None:
            out[ALIASES.get(key, key.replace("__", "."))] = str(value) if isinstance(value, Path) else value
    return out


def _as_dict(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    from ..config import _split

    if not overrides:
        return {}
    return dict(overrides) if isinstance(overrides, dict) else dict(_split(o) for o in overrides)


def run_one(cfg: RunConfig, setup: Setup, out: Path, resume: bool = False) -> RunResult:
    """Train ``cfg.strategy`` on ``setup`` into ``out`` (via ``out.partial``)."""
    strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
    supported(strategy, setup.task_type)
    answers_needed(strategy, setup.data)
    task_type = run_task_type(strategy, setup, cfg)
    train_cfg = resolve_train(cfg, task_type)
    data_cfg = cfg.data.model_copy(update={"max_length": input_length(cfg.data, setup.backbone), "task": task_type.name})
    resolved = cfg.model_copy(update={"train": train_cfg, "data": data_cfg, "output": cfg.output or str(out)})
    task = Task(setup.data.labels, setup.backbone, train_cfg, root=out.parent, type=task_type, run_config=resolved,
                open_run=open_run)
    partial = partial_folder(out)
    if resume and (partial / "metrics.json").is_file():  # killed after training, while the folder was being finished
        log.info("%s: %s finished training; completing the run folder", strategy.name, partial)
        return RunResult(out, _complete(partial, out), resolved)
    hook(strategy, "check", lambda task: None)(task)  # input errors before any folder exists
    check_augment(train_cfg.augment, task_type, hook(strategy, "dataset", None) is not None)
    check_trackers(train_cfg.report_to)
    own = hook(strategy, "dataset", None)  # a strategy with its own data (dapt's corpus) selects and scores on its held-out part
    train_rows, select_rows = own(setup.data, task) if own else (setup.train_rows, setup.val_rows)
    rows = Rows(train_rows, select_rows, select_rows if own else setup.eval_rows, own_data=own is not None)
    probe = Probe.for_backbone(setup.backbone)
    started, phases = time.perf_counter(), {"load": setup.load_seconds}
    main = _is_main_process()
    trained = _train(strategy, task, resolved, setup, rows, probe, out, resume, phases)
    module, state, pad = trained.module, trained.state, setup.backbone.tokenizer.pad_token_id or 0
    with span(phases, "forgetting_probe"):  # nothing trained (zero-shot): the weights after are the ones measured before
        after = probe.measure(module) if state.ever_trainable else trained.probe_before
        forgetting = {**probe.compare(trained.probe_before, after), "passes": 2 if state.ever_trainable else 1}
    with span(phases, "final_eval"):
        final = kept_scores(state, train_cfg) if rows.eval is rows.select else score(
            strategy, module, rows.eval, train_cfg, pad_token_id=pad, task_type=task_type)
        eval_sets = score_eval_sets(strategy, module, setup, final, train_cfg, task_type)
    log.info("%s trained: %s", strategy.name, adapted_summary(adapted_modules(module, set(state.ever_trainable))))
    if not main:  # other processes of a distributed run: the main one writes the folder
        return RunResult(out, {}, resolved, module)
    extra = hook(strategy, "extra_metrics", lambda *args: {})(module, state.history, rows.eval, _device())
    earlier = hook(strategy, "earlier_training", dict)()  # training inside prepare (MAD-X's language adapters) costs too
    with span(phases, "save"):
        _save_artifact(strategy, module, partial / "model", task)
    phases["total"] = setup.load_seconds + time.perf_counter() - started
    metrics = {**run_metrics(strategy.name, cfg.backbone, train_cfg, split_seed(resolved), cfg.data.packing, setup, task_type, trained, rows),
               **cost_metrics(state, earlier),
               "wall_seconds": round(time.perf_counter() - started, 3), "timing": ordered({**state.phases, **phases}),
               "peak_memory_mb": trained.peak_memory_mb, "device": "cuda" if torch.cuda.is_available() else "cpu",
               **score_metrics(hook(strategy, "headline", lambda scores: {}), resolved.train, setup, task_type, trained, rows, final),
               "eval_sets": eval_sets, "history": ([{"epoch": 0, **lean(trained.start)}] if trained.start else [])
               + [lean(h) for h in state.history], "artifact_bytes": folder_bytes(partial / "model"), "versions": versions(),
               "forgetting": forgetting, **task_type.outcome(final, setup.data, state.history, state.lr, bool(state.ever_trainable)),
               **extra}
    if metrics.get("did_not_learn"):
        log.warning("%s did not learn: %s. Next: %s", strategy.name, "; ".join(metrics["did_not_learn"]["evidence"]),
                    metrics["did_not_learn"]["next"])
    trained.trackers.final(metrics, state.step)
    _finish(partial, out, metrics, resolved, setup, final)
    trained.trackers.finish(out)
    log.info("%s: %s -> %s", strategy.name, task_type.describe(metrics["eval"]), out)
    return RunResult(out, metrics, resolved, module)


def _train(strategy: Any, task: Task, resolved: RunConfig, setup: Setup, rows: Rows, probe: Probe, out: Path, resume: bool,
           phases: dict[str, float]) -> Trained:
    """Prepare the model, write the run's config into ``out.partial``, score it before training and train it (the
    folder removed if this fails); peak memory covers all of it."""
    train_cfg, task_type, partial = resolved.train, task.type, partial_folder(out)
    main, pad = _is_main_process(), setup.backbone.tokenizer.pad_token_id or 0
    with PeakMemory() as memory:
        with span(phases, "prepare"):
            module = prepare_module(strategy, task)  # may still reject the config: nothing written yet
        check_regularizers(train_cfg.regularize, module, strategy, task_type)
        tick = time.perf_counter()
        added = augmented_rows(setup, module, train_cfg, resolved.data, task_type, out.parent, Generator)  # training examples only
        augment_seconds = time.perf_counter() - tick
        total = count_parameters(module)[1]
        with span(phases, "forgetting_probe"):
            before = probe.measure(module.to(_device()))  # same device as after: exact zero when untouched
        if main:
            partial.mkdir(parents=True, exist_ok=True)
            (partial / "config.yaml").write_text(dump_config(resolved), encoding="utf-8")
        log.info("%s: %d train / %d eval examples, backbone %s", strategy.name, len(rows.train), len(rows.eval), resolved.backbone)
        with _cleanup_on_failure(partial), _closing(trackers := Trackers()):
            trackers.start(train_cfg.report_to if main else [], partial, out.name, experiment_of(out), resolved.model_dump(mode="json"))
            train_rows = rows.train + added if added else rows.train  # the same list when nothing is added (dapt checks identity)
            with span(phases, "score_before"):
                start = score(strategy, module, rows.eval, train_cfg, pad_token_id=pad,
                              task_type=task_type) if strategy.score_before and rows.eval else None  # epoch 0
            with span(phases, "fit"):
                module, state = fit(strategy, module, train_rows, rows.select, train_cfg, pad_token_id=pad, run_dir=partial,
                                    resume=resume, task_type=task_type, trackers=trackers)
    return Trained(module, state, start, added, augment_seconds, total, before, memory.mb, trackers)


@contextmanager
def _closing(trackers: Trackers):
    """Trackers of a run that fails are closed (an MLflow run is not left 'running')."""
    try:
        yield
    except BaseException:
        trackers.finish()
        raise


def _device() -> torch.device:
    """The device the loop's Accelerator will use (``ACCELERATE_USE_CPU`` read the way Accelerator reads it:
    a bare ``PartialState()`` created first would make every process of a CPU run think it is alone)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).device


def run_task_type(strategy: Any, setup: Setup, cfg: RunConfig) -> Any:
    """The task type of this run: the data's, or the one the strategy's runs always are (``task``)."""
    from ..tasks import get_task_type

    own = strategy.task
    return setup.task_type if own in (None, setup.task_type.name) else get_task_type(own).configure(cfg, setup.backbone)


def score_eval_sets(strategy: Any, module: torch.nn.Module, setup: Setup, final: dict[str, Any], cfg: TrainConfig,
                    task_type: Any = None) -> dict[str, dict]:
    """The task's scores on every evaluation set: the main one as scored at the end, the others now (further
    sets are the data's: a run of another task type, such as a language-modelling stage, has only its own)."""
    task_type = task_type or setup.task_type
    out = {setup.data.eval_name: {**task_type.headline(final), "examples": final.get("examples")}}
    for name, rows in setup.extra_eval_rows.items() if task_type is setup.task_type else ():
        scored = score(strategy, module, rows, cfg, pad_token_id=setup.backbone.tokenizer.pad_token_id or 0, task_type=task_type)
        out[name] = lean(scored)
        log.info("%s: %s on eval set %r", strategy.name, task_type.describe(out[name]), name)
    return out


def prepare_module(strategy: Any, task: Task) -> torch.nn.Module:
    """Build the starting model (seeded: the new head's init) and let the strategy prepare it."""
    torch.manual_seed(task.train_config.seed if task.train_config else 0)
    return strategy.prepare(hook(strategy, "build", task.type.build)(task), task)


def _save_artifact(strategy: Any, module: torch.nn.Module, folder: Path, task: Task) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    hook(strategy, "save", save_pretrained)(module, folder, task)


def _finish(partial: Path, out: Path, metrics: dict, cfg: RunConfig, setup: Setup, final: dict[str, Any]) -> None:
    """Write the run's files, metrics.json last (atomically): once it exists, training is done and a
    ``--resume`` after a kill only completes this (:func:`_complete`) instead of training again."""
    from .checkpoint import write_atomic

    for name, text in get_task_type(metrics["task"]["type"]).files(setup.data, final).items():
        (partial / name).write_text(text, encoding="utf-8")
    card = model_card(metrics, cfg, artifact_kind(partial / "model"), setup.backbone.source)
    (partial / "README.md").write_text(card, encoding="utf-8")
    write_atomic(partial / "metrics.json", json.dumps(finite(metrics), indent=2, allow_nan=False))
    _complete(partial, out)
