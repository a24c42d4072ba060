"""adaptlab: adapt pretrained language models to a new task and compare how.

    import adaptlab
    run = adaptlab.train(strategy="lora", data="reviews.csv")
    adaptlab.compare(["linear_probe", "lora", "full"], data="reviews.csv")
    adaptlab.load(run.run_dir).predict(["a fine film"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AdaptlabError", "compare", "episodic", "load", "load_many", "shots_curve", "train", "__version__"]

from .errors import AdaptlabError

if TYPE_CHECKING:
    from .api import train
    from .eval.episodic import episodic
    from .reporting.comparison import compare
    from .reporting.curves import shots_curve
    from .serve.many import load_many
    from .serve.predict import load

_LAZY = {"train": "api", "compare": "reporting.comparison", "load": "serve.predict", "load_many": "serve.many",
         "episodic": "eval.episodic", "shots_curve": "reporting.curves"}


def __getattr__(name: str) -> Any:
    """Import torch-heavy modules only when their function is first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'adaptlab' has no attribute {name!r}")
