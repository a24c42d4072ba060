"""Every registered strategy through the same invariants, on a tiny in-process BERT.

- only the intended parameters train, and every frozen one stays bit-identical;
- the trainable count in metrics.json is exactly the intended parameters;
- the loss falls on a learnable toy set;
- save -> load gives identical predictions;
- for strategies that can merge, the merged plain model predicts the same (1e-4).

A new strategy needs one row in CASES; the first test fails until it has one.
A row's key is the strategy name, or ``name:variant`` with ``strategy`` set, for
a second configuration (another backbone, other options) of the same strategy.
A strategy that needs another run first (a distillation teacher) names it in
``prerequisite``; one that is not a classifier (domain-adaptive pretraining)
sets ``kind`` and is held to a falling held-out loss instead of accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.api import train
from adaptlab.config import load_config
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train, run_one


@dataclass
class Case:
    trains: Callable[[str], bool]
    """Which parameter names of the prepared module must train."""
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    strategy: str | None = None
    """Registry name, when the row's key names a variant."""
    backbone: str = "bert"
    """Tiny in-process backbone: ``bert``, ``tuned`` (the tiny BERT after some training) or ``llama`` (a causal LM)."""
    learns: bool = True
    """False for strategies that train nothing by design (zero-shot): no parameter may
    train or change, the reported count is 0, and the loop scores once (epoch 0)
    instead of the loss having to fall."""
    merges: bool = False
    """The strategy's ``merge`` hook must give a plain model with the same predictions."""
    min_accuracy: float = 0.75
    """Best eval accuracy the toy task must reach."""
    data: dict[str, Any] = field(default_factory=dict)
    """Data options on top of the toy set (e.g. fewer examples for slow backbones)."""
    prerequisite: Callable[[Path, Path, Path], dict[str, Any]] | None = None
    """Builds what the strategy needs first (backbone, data, scratch folder) -> extra options."""
    kind: str = "classification"
    """``language-modelling``: no accuracy; the held-out loss must fall instead."""
    cuda: bool = False
    """Runs only where CUDA is (qlora's 4-bit kernels); elsewhere its cases are skipped and
    tests/test_cli_errors.py checks the one-line refusal."""

    def name_of(self, key: str) -> str:
        return self.strategy or key


def peft_prompt(n: str) -> bool:
    return "prompt_encoder" in n or "modules_to_save" in n


def adapter_or_head(n: str) -> bool:
    return ".adapter." in n or n.startswith("classifier.")


FROZEN = {"epochs": 2, "lr": 1e-2}
SMALL = {"max_train": 96, "max_eval": 48}


def trained_teacher(backbone: Path, data: Path, folder: Path) -> dict[str, Any]:
    """A full fine-tuned teacher run on a wider tiny BERT (so projections are exercised)."""
    from tests.conftest import make_tiny_bert

    wide = make_tiny_bert(folder / "teacher-backbone", layers=2, hidden=48, seed=3)
    if not (folder / "teacher" / "metrics.json").is_file():
        train({"strategy": "full", "backbone": str(wide), "data": {"train": str(data), "eval_fraction": 0.25},
               "train": {**DEFAULT_TRAIN, "epochs": 4}, "output": str(folder / "teacher")})
    return {"teacher": str(folder / "teacher")}


TRAIN_DATA = "<the case's training file>"
"""An option value replaced by the path of the toy training data (e.g. unlabelled text for mad_x)."""

CASES: dict[str, Case] = {
    "linear_probe": Case(lambda n: n.startswith("head."), train={"epochs": 20, "lr": 5e-2}),
    "top_k": Case(lambda n: n.startswith(("classifier.", "bert.pooler.", "bert.encoder.layer.1.")), {"k": 1}),
    "gradual_unfreeze": Case(  # top, then layer 1, then layer 0; embeddings never
        lambda n: not n.startswith("bert.embeddings."), {"layers_per_group": 1, "embeddings": False}, {"epochs": 5, "lr": 1e-2},
    ),
    "full": Case(lambda n: True),
    "lora": Case(lambda n: "lora_" in n or "modules_to_save" in n, train={"lr": 1e-2}),
    # Strategies that keep the backbone frozen run on ``tuned`` (the tiny BERT after some training,
    # see conftest.make_tuned_bert): a random tiny BERT's frozen features carry no signal.
    "dora": Case(lambda n: "lora_" in n or "modules_to_save" in n, train=FROZEN, backbone="tuned", merges=True),
    "qlora": Case(lambda n: "lora_" in n or "modules_to_save" in n, train=FROZEN, backbone="tuned", cuda=True),
    "ia3": Case(lambda n: "ia3_" in n or "modules_to_save" in n, train=FROZEN | {"lr": 3e-2}, backbone="tuned", merges=True),
    "adapter": Case(adapter_or_head, {"reduction_factor": 4}, FROZEN, backbone="tuned"),
    "adapter:linear": Case(adapter_or_head, {"placement": "pfeiffer", "activation": "identity"}, FROZEN, strategy="adapter",
                           backbone="tuned", merges=True),
    "compacter": Case(lambda n: adapter_or_head(n) or n.startswith("adapter_rules."), {"activation": "identity"}, FROZEN,
                      backbone="tuned", merges=True),
    "prompt_tuning": Case(peft_prompt, {"num_virtual_tokens": 4}, FROZEN | {"lr": 5e-2}, backbone="tuned"),
    "prefix_tuning": Case(peft_prompt, {"num_virtual_tokens": 4}, FROZEN | {"lr": 5e-2}, backbone="tuned"),
    "p_tuning": Case(peft_prompt, {"num_virtual_tokens": 4, "encoder_hidden_size": 16}, FROZEN, backbone="tuned"),
    "zero_shot": Case(lambda n: False, {"label_texts": {"pos": "good great", "neg": "bad awful"}}, backbone="tuned", learns=False),
    # The causal-LM paths (label verbalisations scored by the LM, no head) on a random tiny Llama:
    # it knows nothing, so only the invariants and a falling loss are checked, on less data.
    "prompt_tuning:llama": Case(lambda n: "prompt_encoder" in n, {"num_virtual_tokens": 4, "label_texts": {"pos": "good", "neg": "bad"}},
                                {"lr": 1e-1, "epochs": 2}, strategy="prompt_tuning", backbone="llama", min_accuracy=0.0, data=SMALL),
    "zero_shot:llama": Case(lambda n: False, strategy="zero_shot", backbone="llama", learns=False, data=SMALL),
    "distill": Case(lambda n: True, {"hidden_weight": 1.0, "attention_weight": 1.0}, prerequisite=trained_teacher),
    "dapt": Case(lambda n: True, {"block_size": 32}, {"lr": 1e-2}, kind="language-modelling"),  # fresh MLM head first
    "protonet": Case(lambda n: ".pooler." not in n, {"episodes": 5}),  # mean pooling never reads the pooler
    "maml": Case(lambda n: n.startswith("encoder.encoder.layer.1."), {"inner_layers": 1, "inner_lr": 0.01, "episodes": 5}, {"lr": 3e-2}),
    "contrastive": Case(lambda n: ".pooler." not in n, train={"epochs": 6, "batch_size": 16}),
    "mad_x": Case(  # the language adapter trains by MLM inside prepare(); then only the task adapter and head
        lambda n: ".adapters.task." in n or n.startswith("head."),
        {"target_text": TRAIN_DATA, "mlm_texts": 100, "cache": False}, {"lr": 1e-2},
    ),
}
DEFAULT_TRAIN = {
    "keep_best": False, "epochs": 6, "lr": 3e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0,
}


def test_every_strategy_has_a_case():
    covered = {case.name_of(key) for key, case in CASES.items()}
    classifying = {n for n, cls in discover().items() if "classification" in getattr(cls, "tasks", ("classification",))}
    assert classifying <= covered, f"add a row to CASES for {classifying - covered}"


def case_config(name: str, backbone, data, scratch: Path | None = None) -> Any:
    case = CASES[name]
    extra = case.prerequisite(Path(backbone), Path(data), scratch) if case.prerequisite else {}
    options = {k: str(data) if v == TRAIN_DATA else v for k, v in case.options.items()}
    return load_config({
        "strategy": {"name": case.name_of(name), **options, **extra},
        "backbone": str(backbone),
        "data": {"train": str(data), "eval_fraction": 0.25, "validation_fraction": 0, **case.data},  # fit scores eval_rows here
        "train": {**DEFAULT_TRAIN, **case.train},
    })


@pytest.fixture(autouse=True)
def _cuda_only(request):
    """Cases marked ``cuda`` (qlora) are skipped where no CUDA device is."""
    name = getattr(getattr(request.node, "callspec", None), "params", {}).get("name")
    if name in CASES and CASES[name].cuda and not torch.cuda.is_available():
        pytest.skip(f"{name} needs a CUDA GPU (bitsandbytes' 4-bit kernels)")


@pytest.fixture(scope="module")
def backbones(tiny_backbone, tiny_llama, tuned_bert):
    return {"bert": tiny_backbone, "llama": tiny_llama, "tuned": tuned_bert}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prerequisites")


@pytest.fixture(scope="module")
def trained(backbones, toy_csv, scratch):
    """Train each strategy once; tests below inspect the result."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if CASES[name].cuda and not torch.cuda.is_available():
            pytest.skip(f"{name} needs a CUDA GPU")
        if name not in cache:
            cfg = case_config(name, backbones[CASES[name].backbone], toy_csv, scratch)
            setup = make_setup(cfg)
            strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
            task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
            rows = hook(strategy, "dataset", lambda data, task: (setup.train_rows, setup.eval_rows))(setup.data, task)
            module = prepare_module(strategy, task)
            before = {n: p.detach().cpu().clone() for n, p in module.named_parameters()}
            module, state = fit(strategy, module, *rows, task.train_config)
            cache[name] = dict(strategy=strategy, task=task, module=module, state=state, before=before, setup=setup, cfg=cfg)
        return cache[name]

    return get


STRATEGIES = sorted(CASES)


def on_device_of(module: torch.nn.Module, batch: dict) -> dict:
    """The batch on the device the module trained on (a GPU where one is visible)."""
    device = next(module.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("name", STRATEGIES)
def test_only_intended_parameters_train(trained, name):
    t = trained(name)
    after = dict(t["module"].named_parameters())
    expected = {n for n in after if CASES[name].trains(n)}
    assert bool(expected) == CASES[name].learns, "a learning case must expect some parameters to train, a non-learning one none"
    assert set(t["state"].ever_trainable) == expected
    changed = {n for n, p in after.items() if not torch.equal(p.detach().cpu(), t["before"][n])}
    frozen = set(after) - expected
    assert not (changed & frozen), f"frozen parameters changed: {sorted(changed & frozen)[:5]}"
    assert changed == expected, f"trainable parameters that never changed: {sorted(expected - changed)[:5]}"


@pytest.mark.parametrize("name", STRATEGIES)
def test_loss_falls_and_beats_chance(trained, name):
    history = trained(name)["state"].history
    if not CASES[name].learns:  # scored once, untrained: a real accuracy, no training loss
        assert [h["epoch"] for h in history] == [0] and history[0]["train_loss"] is None
        assert 0.0 <= history[0]["accuracy"] <= 1.0 and history[0]["examples"] > 0
        return
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    if CASES[name].kind == "classification":
        assert max(h["accuracy"] for h in history) > CASES[name].min_accuracy
    else:
        assert min(h["loss"] for h in history[1:]) < history[0]["loss"]


@pytest.mark.parametrize("name", STRATEGIES)
def test_save_load_round_trip(trained, name, tmp_path):
    t = trained(name)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task)
    loaded = hook(strategy, "load", load_pretrained)(tmp_path, task)
    module.eval(), loaded.eval()
    from adaptlab.data.batching import Collate
    from adaptlab.eval.metrics import model_inputs

    batch = on_device_of(module, model_inputs(Collate(task.backbone.tokenizer.pad_token_id)(t["setup"].eval_rows[:16])))
    loaded.to(next(module.parameters()).device)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, module(**batch).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", STRATEGIES)
def test_reported_counts(backbones, toy_csv, tmp_path, scratch, name):
    cfg = case_config(name, backbones[CASES[name].backbone], toy_csv, scratch)
    result = run_one(cfg, make_setup(cfg), tmp_path / "run")
    strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
    fresh = prepare_module(strategy, Task(result.metrics["task"]["labels"], make_setup(cfg).backbone, resolve_train(cfg)))
    named = dict(fresh.named_parameters())
    expected = sum(p.numel() for n, p in named.items() if CASES[name].trains(n))
    assert result.metrics["trainable_params"] == expected
    assert result.metrics["total_params"] == sum(p.numel() for p in {id(p): p for p in named.values()}.values())
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run.partial").exists()


MERGING = sorted(n for n, c in CASES.items() if c.merges)


@pytest.mark.parametrize("name", MERGING)
def test_merge_round_trip(trained, name, tmp_path):
    """Merged into plain weights, saved with save_pretrained and reloaded: the same predictions."""
    from transformers import AutoModelForSequenceClassification

    from adaptlab.data.batching import Collate
    from adaptlab.eval.metrics import model_inputs

    t = trained(name)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path / "adapter", task)
    batch = on_device_of(module, model_inputs(Collate(task.backbone.tokenizer.pad_token_id)(t["setup"].eval_rows[:16])))
    module.eval()
    with torch.inference_mode():
        before = module(**batch).logits
    merged = strategy.merge(hook(strategy, "load", load_pretrained)(tmp_path / "adapter", task))
    merged.save_pretrained(tmp_path / "merged")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval().to(before.device)
    assert not any("lora" in n or "ia3" in n or ".adapter." in n for n, _ in plain.named_parameters())
    with torch.inference_mode():
        torch.testing.assert_close(plain(**batch).logits, before, rtol=0, atol=1e-4)
