"""The run folder's life: its name, its lock, ``<out>.partial`` while the run writes it, the rename at the end.

A run folder is either whole or absent: a run writes ``<out>.partial`` and renames it when metrics.json (written
last) is in place; a killed run leaves the partial folder with a checkpoint for ``--resume``, or nothing when it
died before its first checkpoint. One process at a time writes a folder (a ``filelock`` next to it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import AdaptlabError
from .checkpoint import Checkpointer

log = logging.getLogger("adaptlab")


def output_folder(cfg: RunConfig, resume: bool) -> Path:
    out = Path(cfg.output or Path("runs") / f"{cfg.strategy.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    partial = partial_folder(out)
    if out.exists():
        raise AdaptlabError(f"run folder {out} already exists; choose another --output")
    if partial.exists() and not resume:
        raise AdaptlabError(f"{partial} holds an interrupted run; pass --resume to continue it, or delete it")
    return out


def partial_folder(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


@contextmanager
def exclusive(out: Path):
    """Hold ``<out>.lock`` while a run writes ``out``: a second process aiming at the same folder stops at
    once with one clear line, before loading anything, instead of both writing into it. Only the main
    process of a distributed run takes it (the others write nothing)."""
    if not is_main_process():
        yield
        return
    from filelock import FileLock, Timeout

    path = out.with_name(out.name + ".lock")
    created = not path.parent.exists()  # removed again if the run leaves nothing in it (bad input)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=0)
        lock.acquire()
    except Timeout:
        raise AdaptlabError(f"another adaptlab process is writing {out} (it holds {path}); wait for it or choose another --output") from None
    except OSError as e:
        raise AdaptlabError(f"cannot write next to {out}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()
        path.unlink(missing_ok=True)
        if created and not any(path.parent.iterdir()):
            path.parent.rmdir()


def is_main_process() -> bool:
    """True outside distributed runs, and on rank 0 inside them (``accelerate launch``, ``torchrun`` set RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def cleanup_on_failure(partial: Path):
    """Remove ``partial`` if the run fails before its first checkpoint (nothing to resume)."""
    try:
        yield
    except BaseException as e:
        resumable = (partial / "checkpoint").exists() or (partial / "checkpoint.old").exists()
        if not resumable:
            shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt):
            out = partial.with_name(partial.name.removesuffix(".partial"))
            log.warning("interrupted: %s", f"{partial} holds the last checkpoint; continue with --output {out} --resume"
                        if resumable else "no checkpoint yet, nothing kept")
        raise


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None``: metrics.json stays valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def complete(partial: Path, out: Path) -> dict[str, Any]:
    """The last steps of a finished run: drop the checkpoint, rename ``out.partial`` to ``out``."""
    Checkpointer(partial / "checkpoint").remove()
    os.replace(partial, out)
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
