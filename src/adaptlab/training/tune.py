"""``adaptlab tune``: hyperparameter search for one strategy with Optuna.

Optuna does the searching (TPE sampler, median or successive-halving pruning, a SQLite study
through its RDB storage, so a killed search resumes and two processes can share a study);
this module only says what to search and how a trial is scored. Every trial is a normal run
folder; it is judged on the validation split carved from the training data (``data.validation_fraction``),
and the evaluation split -- which no trial chose anything on -- measures what the best
configuration gains over the strategy's defaults. Pruning is fed by each epoch's validation
score through :data:`adaptlab.training.loop.EPOCH_END`.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import apply_overrides, build_config, load_config, read_yaml
from ..errors import AdaptlabError, did_you_mean
from ..strategies import get_strategy
from .loop import EPOCH_END
from .runner import Setup, make_setup, run_one
from .space import Space, check_space, parse_space, space_for

log = logging.getLogger("adaptlab")
PRUNERS = ("median", "halving", "none")
OWN_VALIDATION = {"data.validation_fraction": 0.25, "data.min_validation_train": 2}
"""Where the run itself sets no validation split aside (few-shot, small data), the trials use this one."""


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise AdaptlabError("adaptlab tune needs Optuna: pip install 'adaptlab[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune(
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    trials: int = 20,
    budget_minutes: float | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    space: list[str] | None = None,
    pruner: str = "median",
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Search the strategy's space with ``trials`` trials (all told, counting those a resumed study has);
    return the summary written to ``<output>/tune.json``."""
    optuna = _optuna()
    if trials < 1:
        raise AdaptlabError(f"--trials must be at least 1, got {trials}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise AdaptlabError(f"--budget-minutes must be positive, got {budget_minutes}")
    if pruner not in PRUNERS:
        raise AdaptlabError(f"unknown pruner '{pruner}'{did_you_mean(pruner, list(PRUNERS))}; choose from: {', '.join(PRUNERS)}")
    data = copy.deepcopy(recipe) if isinstance(recipe, dict) else (read_yaml(recipe) if recipe is not None else {})
    declared = data.pop("search", None) or {}
    base = load_config(data, overrides or {})
    name = base.strategy.name
    fixed = set(overrides or {}) | {f"{section}.{key}" for section in ("train", "strategy") for key in data.get(section) or {}}
    shared = {k: v for k, v in space_for(get_strategy(name), base).items() if k not in fixed}  # what the user set stays set
    search = shared | parse_space(declared) | parse_space(space or [])
    check_space(search, base)
    folder = Path(output or Path("runs") / f"tune-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    setup = make_setup(base, folder.parent)
    if not setup.val_rows and "validation_fraction" not in base.data.model_fields_set:  # few-shot: the search carves its own
        base = load_config(data, {**(overrides or {}), **OWN_VALIDATION})
        setup = make_setup(base, folder.parent)
        log.info("tune: trials train on %d examples and are judged on %d set aside (data.validation_fraction=%s)",
                 len(setup.train_rows), len(setup.val_rows), OWN_VALIDATION["data.validation_fraction"])
    if not setup.val_rows:
        raise AdaptlabError("adaptlab tune chooses on a validation split carved from the training data and this run has none "
                            "(data.validation_fraction=0, or a class too small to give one); set data.validation_fraction")
    study = open_study(optuna, folder, name, resume, base.train.seed, pruner)
    base_data = base.model_dump(mode="json", exclude_unset=True)
    defaults = _defaults(base, setup, folder)
    metric = defaults.config.train.metric
    objective = Objective(base_data, search, setup, folder, metric, optuna)
    done = sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL for t in study.trials)
    log.info("tune %s: %d trial(s) to run (%d done) over %s", name, max(0, trials - done), done, ", ".join(search))
    started = time.perf_counter()
    if trials > done:
        study.optimize(objective, n_trials=trials - done, timeout=budget_minutes * 60 if budget_minutes else None,
                       callbacks=callbacks or [], gc_after_trial=True)
    return summarise(study, defaults, folder, search, metric, time.perf_counter() - started, optuna, base_data)


def open_study(optuna: Any, folder: Path, strategy: str, resume: bool, seed: int, pruner: str) -> Any:
    """The study in ``folder/study.db``: new, or (``resume``) the one there, which must be this strategy's.
    Trials a killed search left running are marked failed (their partial run folders go)."""
    db = folder / "study.db"
    if db.exists() and not resume:
        raise AdaptlabError(f"{folder} already holds a study; pass --resume to continue it, or choose another --output")
    if resume and not db.exists():
        raise AdaptlabError(f"--resume: {folder} holds no study (no study.db)")
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
    if resume:
        owner = optuna.load_study(study_name="adaptlab", storage=storage).user_attrs.get("strategy")
        if owner != strategy:
            raise AdaptlabError(f"{folder} is a study of strategy {owner}, not {strategy}; choose another --output")
    pruners = {"median": optuna.pruners.MedianPruner(n_startup_trials=2), "halving": optuna.pruners.SuccessiveHalvingPruner(),
               "none": optuna.pruners.NopPruner()}
    study = optuna.create_study(study_name="adaptlab", storage=storage, direction="maximize", load_if_exists=resume,
                                sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruners[pruner])
    study.set_user_attr("strategy", strategy)
    study.set_user_attr("pruner", pruner)  # the last session's (a resumed study may change it): tune.json reports it
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        _remove_partial(folder / _trial_name(t.number))
    return study


class Objective:
    """One trial: a run with the suggested settings, scored on the validation split."""

    def __init__(self, base: dict, search: dict[str, Space], setup: Setup, folder: Path, metric: str, optuna: Any):
        self.base, self.search, self.setup, self.folder, self.metric, self.optuna = base, search, setup, folder, metric, optuna

    def __call__(self, trial: Any) -> float:
        chosen = {key: space.suggest(trial, key) for key, space in self.search.items()}
        out = self.folder / _trial_name(trial.number)
        cfg = build_config(apply_overrides(copy.deepcopy(self.base), {**chosen, "output": str(out)}))
        token = EPOCH_END.set(lambda epoch, scores: self._report(trial, epoch, scores))
        try:
            result = run_one(cfg, self.setup, out)
        except self.optuna.TrialPruned:
            _remove_partial(out)  # a pruned trial leaves no folder
            raise
        finally:
            EPOCH_END.reset(token)
        trial.set_user_attr("run", str(out))
        trial.set_user_attr("eval", result.metrics["eval"].get(self.metric))
        trial.set_user_attr("train_seconds", result.metrics["train_seconds"])
        return result.metrics["validation"][self.metric]

    def _report(self, trial: Any, epoch: int, scores: dict[str, Any]) -> None:
        if scores.get(self.metric) is None:
            return
        trial.report(scores[self.metric], epoch)
        if trial.should_prune():
            raise self.optuna.TrialPruned(f"epoch {epoch}: {self.metric} {scores[self.metric]:.4f}")


def _trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def _remove_partial(out: Path) -> None:
    import shutil

    from .folders import partial_folder

    shutil.rmtree(partial_folder(out), ignore_errors=True)


def _defaults(base: Any, setup: Setup, folder: Path) -> Any:
    """The strategy with its default settings, once: the reference the best trial is measured against. A second
    process sharing the study waits for the first's (a lock) and reads it."""
    from filelock import FileLock

    from .runner import RunResult

    out = folder / "defaults"
    with FileLock(str(folder / "defaults.lock")):
        if (out / "metrics.json").is_file():
            return RunResult(out, json.loads((out / "metrics.json").read_text()), load_config(out / "config.yaml"))
        _remove_partial(out)
        log.info("tune: the strategy with its default settings first (the reference for the gain)")
        return run_one(base.model_copy(update={"output": str(out)}), setup, out)


def summarise(study: Any, defaults: Any, folder: Path, search: dict, metric: str, seconds: float, optuna: Any,
              base: dict[str, Any]) -> dict[str, Any]:
    """``tune.json``, ``best.yaml`` (the user's settings with the best trial's: a recipe ``adaptlab train`` runs) and
    ``trials.png``."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise AdaptlabError(f"no trial of {folder} completed (pruned or failed: see the log); nothing to choose from")
    best = study.best_trial
    recipe = apply_overrides(copy.deepcopy(base), best.params)
    recipe.pop("output", None)
    (folder / "best.yaml").write_text(f"# adaptlab tune: best of {len(done)} trials (validation {metric} {best.value:.4f})\n"
                                      + yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    base_eval = defaults.metrics["eval"].get(metric)
    summary = {
        "strategy": study.user_attrs.get("strategy"), "pruner": study.user_attrs.get("pruner"), "metric": metric,
        "trials": len(study.trials),
        "complete": len(done), "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best": {"trial": best.number, "params": best.params, "validation": best.value, "eval": best.user_attrs.get("eval"),
                 "run": best.user_attrs["run"]},
        "defaults": {"validation": (defaults.metrics.get("validation") or {}).get(metric), "eval": base_eval, "run": str(defaults.run_dir)},
        "gain_on_eval": None if base_eval is None or best.user_attrs.get("eval") is None else best.user_attrs["eval"] - base_eval,
        "eval_examples": defaults.metrics["eval_examples"], "space": {k: v.describe() for k, v in search.items()},
        "search_seconds": round(seconds, 1),
        "trial_train_seconds": round(sum(t.user_attrs.get("train_seconds", 0) for t in done), 1),
    }
    (folder / "tune.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot_trials(study, folder / "trials.png", metric, summary["defaults"]["validation"], optuna)
    return summary


def plot_trials(study: Any, path: Path, metric: str, default: float | None, optuna: Any) -> None:
    """Each completed trial's validation score, the best so far, and the defaults' score (matplotlib, if installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    xs, ys = [t.number for t in done], [t.value for t in done]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(xs, ys, s=18, label="trial")
    ax.step(xs, [max(ys[: i + 1]) for i in range(len(ys))], where="post", color="C1", label="best so far")
    if default is not None:
        ax.axhline(default, color="grey", linestyle="--", label="defaults")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"adaptlab tune: {study.user_attrs.get('strategy')}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)



def tuned(configs: list[tuple[str, Any]], trials: dict[str, int], work: Path, search: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    """``adaptlab compare --tune N`` (or an entry's ``tune: N``): the entries named in ``trials`` tuned with that many
    trials each (studies in ``work/tune/<name>``, resumed when there), then run at their best settings: strategies
    compared each at its best, not at hand-set defaults."""
    out = []
    for name, cfg in configs:
        if name not in trials:
            out.append((name, cfg))
            continue
        folder = work / "tune" / name
        data = cfg.model_dump(mode="json", exclude_unset=True)
        data.pop("output", None)
        summary = tune({**data, "search": search or {}}, trials=trials[name], output=folder, resume=(folder / "study.db").exists())
        best = apply_overrides(data, summary["best"]["params"])
        log.info("compare --tune: %s at its best of %d trials: %s", name, summary["complete"], summary["best"]["params"])
        out.append((name, build_config(best)))
    return out
