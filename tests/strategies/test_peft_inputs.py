"""Options that do not fit the task or backbone: one error line, exit 2, no run folder."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("options, message", [
    (["-s", "adapter", "--set", "strategy.layers=[0,7]"], "layers [7] do not exist"),
    (["-s", "compacter", "--set", "strategy.n=5"], "must divide the hidden size 32"),
    (["-s", "zero_shot", "--set", "strategy.label_texts={pos: good, positive: great}"], "labels the data does not have: positive"),
    (["-s", "prompt_tuning", "--set", "strategy.template=no placeholder"], "template"),
    (["-s", "ia3", "--set", "strategy.target_modules=[key]"], "set both"),
])
def test_bad_options_fail_before_any_folder(cli, tiny_backbone, toy_csv, tmp_path, options, message):
    code, _, err = cli("train", *options, "-b", tiny_backbone, "-d", toy_csv, "-o", tmp_path / "run", "-q")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
