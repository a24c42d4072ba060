"""Which rows a comparison's report ranks together: the task type most of its serving runs share."""

from __future__ import annotations

from adaptlab.reporting.report import main_task


def run(name: str, task: str) -> dict:
    return {"run": name, "task": {"type": task}}


def test_the_main_task_is_the_one_most_serving_runs_share():
    # the preference recipe with GRPO named last: GRPO reads the pairs' prompts as an sft task
    preference = [run("sft-kjv", "sft"), run("rm", "preference"), run("dpo", "preference"), run("kto", "preference"),
                  run("grpo", "sft")]
    assert main_task(preference).name == "preference"  # it was the last run's (sft): the pair rows left the report
    dapt = [run("domain", "language_modelling"), run("lora", "classification")]
    assert main_task(dapt).name == "classification"  # a stage that makes a backbone never decides
    assert main_task([run("a", "sft"), run("b", "preference")]).name == "preference"  # a tie: the last run's
