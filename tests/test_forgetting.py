"""The forgetting block: in every run, exactly zero when the backbone is untouched,
non-zero when it trained, text loss through a checkpoint's own LM head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptlab.eval.forgetting import Probe, find_backbone, reference_pairs, reference_text
from adaptlab.models.backbones import load_backbone
from adaptlab.training.runner import train

QUICK = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0}


def make_tiny_mlm(folder: Path) -> Path:
    """The tiny BERT with a (saved, so 'pretrained') masked-LM head."""
    from transformers import BertForMaskedLM

    from tests.conftest import make_tiny_bert

    make_tiny_bert(folder)
    config = BertForMaskedLM.config_class.from_pretrained(folder)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mlm_backbone(tmp_path_factory) -> Path:
    return make_tiny_mlm(tmp_path_factory.mktemp("tiny-mlm"))


def test_reference_set_is_shipped_and_fixed():
    assert len(reference_text()) == 32 and len(reference_pairs()) == 64
    assert all(len(p) == 2 and p[0] and p[1] for p in reference_pairs())


@pytest.mark.parametrize("strategy", ["linear_probe", "top_k"])
def test_untouched_backbone_shows_exactly_zero(mlm_backbone, toy_csv, tmp_path, strategy):
    options = {"k": 0} if strategy == "top_k" else {}  # k=0: the head alone trains
    result = train({"strategy": {"name": strategy, **options}, "backbone": str(mlm_backbone), "data": {"train": str(toy_csv)},
                    "train": QUICK, "output": str(tmp_path / "run")})
    block = result.metrics["forgetting"]
    assert block["text_loss"]["objective"] == "masked-lm"
    assert block["text_loss"]["change"] == 0.0 and block["text_loss"]["before"] == block["text_loss"]["after"]
    pairs = block["pairs"]
    assert pairs["similarity_change"] == 0.0 and pairs["embedding_distance"] == 0.0
    assert pairs["contrastive_loss_change"] == 0.0 and pairs["similarity_spearman"] == 1.0
    assert block["passes"] == 2  # a head trained: measured again after, and equal because the trunk did not move


def test_a_run_that_trains_nothing_measures_the_probe_once(tiny_chat, translations_csv, tmp_path, monkeypatch):
    """Zero-shot: the weights after are the weights measured before, so the probe's second pass is not run
    (on a 135M model it is 7 s of a 30 s zero-shot run)."""
    measured = []
    original = Probe.measure
    monkeypatch.setattr(Probe, "measure", lambda self, module: measured.append(module) or original(self, module))
    result = train({"strategy": "zero_shot", "backbone": str(tiny_chat), "data": {"train": str(translations_csv), "max_length": 96},
                    "train": {"progress": False}, "output": str(tmp_path / "run")})
    block = result.metrics["forgetting"]
    assert len(measured) == 1 and block["passes"] == 1
    assert block["text_loss"]["change"] == 0.0 and block["text_loss"]["before"] == block["text_loss"]["after"]


def test_full_fine_tuning_moves_the_backbone(mlm_backbone, toy_csv, tmp_path):
    result = train({"strategy": "full", "backbone": str(mlm_backbone), "data": {"train": str(toy_csv)},
                    "train": QUICK, "output": str(tmp_path / "run")})
    block = result.metrics["forgetting"]
    assert block["text_loss"]["change"] != 0.0
    assert block["pairs"]["similarity_change"] > 0 and block["pairs"]["embedding_distance"] > 0


def test_no_lm_head_means_no_text_loss_and_says_why(tiny_backbone):
    probe = Probe(load_backbone(str(tiny_backbone)))  # saved as a bare BertModel, like all-MiniLM
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_backbone)
    block = probe.compare(probe.measure(model), probe.measure(model))
    assert block["text_loss"] is None and "no pretrained language-modelling head" in block["text_loss_note"]
    assert block["pairs"]["count"] == 64


def test_text_loss_uses_the_adapted_tied_embeddings(mlm_backbone):
    """Changing only the (tied) word embeddings changes the masked-LM loss: the head is read from the trunk."""
    from transformers import AutoModel

    probe = Probe(load_backbone(str(mlm_backbone)))
    model = AutoModel.from_pretrained(mlm_backbone)
    before = probe.measure(model)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(1.5)
    assert probe.compare(before, probe.measure(model))["text_loss"]["change"] != 0.0


def test_find_backbone_inside_wrappers(tiny_backbone):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_pretrained(tiny_backbone, num_labels=2)
    assert find_backbone(clf) is clf.bert
    wrapped = get_peft_model(clf, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, target_modules=["query"]))
    assert find_backbone(wrapped) is clf.bert


def test_report_has_a_forgetting_column(tiny_backbone, toy_csv, tmp_path):
    from adaptlab.reporting.comparison import compare

    result = compare(["linear_probe", "full"], backbone=str(tiny_backbone), data=str(toy_csv), output=tmp_path / "c",
                     overrides={"train.epochs": 1, "train.progress": False})
    report = (result.folder / "report.md").read_text()
    assert "forgetting: pair-similarity Δ" in report and "## Forgetting" in report
    rows = {r["run"]: r for r in result.rows}
    assert rows["linear_probe"]["forgetting"]["pairs"]["similarity_change"] == 0.0
    assert rows["full"]["forgetting"]["pairs"]["similarity_change"] > 0.0
