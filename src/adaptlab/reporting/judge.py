"""A trained reward model judges what each strategy of a generative comparison wrote.

A comparison recipe may name a judge::

    judge:
      reward_model: "@rm"     # a reward_model run: a stage of this recipe or a run folder
      baseline: sft-as-is     # the row every other one is compared with

After every strategy ran, the reward model scores each run's answers to the held-out prompts
(``generations.jsonl``, written by the ``sft`` and ``preference`` tasks) and the report gains two columns:
the mean reward, and the *win rate* over the baseline -- the share of prompts where the run's answer
scores higher than the baseline's on the same prompt, a tie counting half (the reward-model win rate of
Ouyang et al. 2022 §4 and Rafailov et al. 2023 §6, with a trained reward model in place of people or
GPT-4). The chosen and rejected reference answers are scored too: they bound what the judge calls good.
Nothing here is specific to a strategy or a task: it needs answers and a run that scores them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import AdaptlabError
from ..models.backbones import resolve_ref
from .seeds import group_of

log = logging.getLogger("adaptlab")

JUDGE_COLUMNS = [("judge_win_rate", "win rate vs baseline (RM)", "{:.3f}"), ("judge_reward", "mean reward (RM)", "{:.2f}")]
"""The report's columns for judged runs (``flat`` turns a row's ``judge`` block into ``judge_*``)."""


def check_judge(spec: Any, labels: list[str], stages: list[str]) -> dict[str, str] | None:
    """The recipe's ``judge`` block, validated before anything trains: a reward model that will exist, a
    baseline that is one of the comparison's rows."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("reward_model"), str):
        raise AdaptlabError("judge needs reward_model: '@<stage>' or a reward-model run folder (and optionally baseline: <row>)")
    unknown = set(spec) - {"reward_model", "baseline"}
    if unknown:
        raise AdaptlabError(f"judge has unknown field(s) {sorted(unknown)}: it takes reward_model and baseline")
    ref, baseline = spec["reward_model"], spec.get("baseline")
    if ref.startswith("@") and ref[1:] not in stages:
        raise AdaptlabError(f"judge.reward_model {ref!r} names no stage of this recipe (stages: {', '.join(stages) or 'none'})")
    if not ref.startswith("@") and not (Path(ref) / "metrics.json").is_file():
        raise AdaptlabError(f"judge.reward_model {ref!r} is not a finished run folder (no metrics.json)")
    if baseline is not None and baseline not in {group_of(n) for n in labels} | set(stages):
        raise AdaptlabError(f"judge.baseline {baseline!r} is not a row of this comparison ({', '.join(labels)})")
    return {"reward_model": ref, "baseline": baseline}


def judge(spec: dict[str, str], rows: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Score every run's generations in ``folder/<run>`` with the reward model; add a ``judge`` block to each
    judged row (in place) and return the summary for results.json."""
    from ..serve.predict import load

    scorer = load(resolve_ref(spec["reward_model"], folder))
    answers = {r["run"]: _generations(folder / r["run"]) for r in rows}
    answers = {name: rows_ for name, rows_ in answers.items() if rows_}
    if not answers:
        log.warning("judge: no run wrote generations.jsonl; nothing to judge")
        return {}
    rewards = {name: _score(scorer, gen, "output") for name, gen in answers.items()}
    baseline = spec.get("baseline")
    base_runs = {r.get("seed"): r["run"] for r in rows if r["run"] in answers and (r.get("group") or r["run"]) == baseline}
    first_base = next(iter(base_runs.values()), None)  # the anchors and the summary's win rates: the first seed's
    anchor = first_base or [r["run"] for r in rows if r["run"] in answers][-1]
    anchors = {"chosen": _score(scorer, answers[anchor], "reference")}  # the baseline's (or last row's) references
    if all("rejected" in g for g in answers[anchor]):
        anchors["rejected"] = _score(scorer, answers[anchor], "rejected")
    for row in rows:
        if row["run"] not in rewards:
            continue
        mine, base = rewards[row["run"]], rewards.get(base_runs.get(row.get("seed"), ""))  # the baseline of the same seed
        block: dict[str, Any] = {"reward": _mean(mine), "baseline": baseline, "prompts": len(mine)}
        if base is not None:
            block["win_rate"] = win_rate(mine, base)
        row["judge"] = block
    log.info("judge: mean reward %s", ", ".join(f"{n} {_mean(r):.2f}" for n, r in rewards.items()))
    base = rewards.get(first_base) if first_base else None
    return {"reward_model": spec["reward_model"], "baseline": baseline, "anchors": {k: _mean(v) for k, v in anchors.items()},
            "win_rate_of_anchors": {k: win_rate(v, base) for k, v in anchors.items()} if base is not None else {}}


def win_rate(mine: dict[tuple[int, str], float], theirs: dict[tuple[int, str], float]) -> float | None:
    """The share of the (position, prompt) pairs both answered where ``mine`` scores higher, ties counting half."""
    common = [p for p in mine if p in theirs]
    if not common:
        return None
    return sum(1.0 if mine[p] > theirs[p] else 0.5 if mine[p] == theirs[p] else 0.0 for p in common) / len(common)


def _generations(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "generations.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _score(scorer: Any, rows: list[dict[str, str]], key: str) -> dict[tuple[int, str], float]:
    """(position, prompt) -> the reward of the row's ``key`` answer to it (a prompt may occur twice)."""
    rewards = scorer.score([r["prompt"] for r in rows], [r[key] for r in rows])
    return {(i, r["prompt"]): v for i, (r, v) in enumerate(zip(rows, rewards))}


def _mean(values: Any) -> float:
    values = list(values.values()) if isinstance(values, dict) else list(values)
    return sum(values) / max(len(values), 1)


def judge_section(judged: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The report's paragraph on the judge: what it is, its anchors, and who beats the baseline."""
    if not judged:
        return []
    anchors = judged.get("anchors", {})
    lines = ["", "## Judged by the reward model", "",
             f"Reward model `{judged['reward_model']}` scored every run's answers to the evaluation prompts. "
             f"For scale, it gives the chosen reference answers {anchors.get('chosen', float('nan')):.2f} on average"
             + (f" and the rejected ones {anchors['rejected']:.2f}." if "rejected" in anchors else ".")]
    if judged.get("baseline"):
        lines[-1] += (f" *Win rate*: the share of prompts where a run's answer scores above **{judged['baseline']}**'s answer "
                      "to the same prompt (ties half; 0.5 means no difference).")
        for row in rows:
            block = row.get("judge") or {}
            if block.get("win_rate") is not None and row["run"] != judged["baseline"]:  # (ties half)
                lines.append(f"- **{row['run']}** wins {block['win_rate']:.1%} of {block['prompts']} prompts "
                             f"(mean reward {block['reward']:.2f}).")
    return lines
