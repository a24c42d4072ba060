"""The same loop on two processes (DDP over gloo on CPU), launched with torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not shutil.which(str(TORCHRUN)), reason="torchrun not installed")
def test_processes_stay_in_sync_when_more_layers_unfreeze(tmp_path, tiny_backbone, toy_csv):
    result = torchrun(Path(__file__).with_name("distributed_check.py"), tiny_backbone, toy_csv, tmp_path / "out.json",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report == {"world": 2, "same": True, "moved": True, "steps": 3 * 5, "examples": 3 * 320}  # each: half the batches


@pytest.mark.skipif(not shutil.which(str(TORCHRUN)), reason="torchrun not installed")
def test_maml_meta_gradients_are_averaged_across_processes(tmp_path, tiny_backbone, toy_csv):
    result = torchrun(Path(__file__).with_name("distributed_check.py"), tiny_backbone, toy_csv, tmp_path / "out.json", "maml",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["same"] and report["moved"] and report["steps"] == 3 * 2  # 4 episodes an epoch, 2 per process


def test_cli_train_writes_one_run_folder(tmp_path, tiny_backbone, toy_csv):
    result = torchrun("-m", "adaptlab", "train", "-s", "lora", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1",
                      "-o", "run", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder: run") == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train_examples"] == 288 and metrics["task"]["validation_examples"] == 32  # 400: 80 eval, 32 validation
    assert metrics["history"][0]["examples"] == 32 and metrics["eval"]["accuracy"] is not None


@pytest.mark.skipif(not shutil.which(str(TORCHRUN)), reason="torchrun not installed")
@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_fsdp_shards_then_saves_the_same_artefacts(tmp_path, tiny_backbone, toy_csv, strategy):
    result = torchrun(Path(__file__).with_name("fsdp_check.py"), tiny_backbone, toy_csv, tmp_path / "out.json", strategy,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["world"] == 2 and report["sharded"], report  # the parameters were DTensor shards while training
    assert "--resume is not supported with train.distributed=fsdp" in report["resume_refused"], report
    assert report["whole"] and report["moved"] and report["same"] and report["steps"] == 2 * 5, report
    assert report["reloaded_max_diff"] < 1e-5, report  # save -> load -> the same predictions


def test_cli_fsdp_run_folder_loads_and_predicts(tmp_path, tiny_backbone, toy_csv):
    import adaptlab

    result = torchrun("-m", "adaptlab", "train", "-s", "lora", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1",
                      "--distributed", "fsdp", "-o", "run", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder: run") == 1
    assert (tmp_path / "run" / "model" / "adapter_model.safetensors").is_file()  # a peft adapter folder, as without FSDP
    predictions = adaptlab.load(tmp_path / "run").predict(["a fine film", "dull and long"])
    assert len(predictions) == 2


def test_deepspeed_without_the_package_is_one_clear_line(monkeypatch):
    from adaptlab.errors import AdaptlabError
    from adaptlab.training.distributed import plugins

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as on this machine: DeepSpeed's CPU path needs Intel's oneCCL
    with pytest.raises(AdaptlabError, match="needs the deepspeed package"):
        plugins("deepspeed-zero3")
    assert plugins("ddp") == {}
