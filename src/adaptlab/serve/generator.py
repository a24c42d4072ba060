"""A generator over anything adaptlab can generate with: a finished sft run folder or a causal-LM backbone.

What back-translation (``data/backtranslate.py``) translates through; it lives here, in the serving layer,
because opening a run folder or building a backbone's generative task is serving work -- the data layer is
handed :class:`Generator` by the runner instead of importing upwards.
"""

from __future__ import annotations

from pathlib import Path


class Generator:
    """``generate(prompts) -> answers`` from a run folder or a causal-LM backbone."""

    def __init__(self, ref: str, root: Path | None = None, max_new_tokens: int = 96):
        self.ref = ref
        folder = Path(ref)
        if (folder / "metrics.json").is_file():
            from .predict import load

            predictor = load(folder)
            self._generate = predictor.generate
            return
        from ..config import load_config
        from ..models.backbones import load_backbone, resolve_ref
        from ..strategies.base import Task
        from ..tasks import get_task_type

        cfg = load_config({"backbone": ref, "data": {"task": "sft"}, "generation": {"max_new_tokens": max_new_tokens}})
        backbone = load_backbone(resolve_ref(ref, root))
        task_type = get_task_type("sft").configure(cfg, backbone)
        model = task_type.build(Task([], backbone, cfg.train, root=root, type=task_type, run_config=cfg)).eval()
        self._generate = lambda prompts: task_type.generate(model, prompts, None, True)

    def __call__(self, prompts: list[str]) -> list[str]:
        return self._generate(prompts) if prompts else []
