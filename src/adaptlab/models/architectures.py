"""Corrections of the layout :mod:`placement` reads from a model, for families where reading is ambiguous.

Placement comes from the model: :func:`adaptlab.models.placement.layout` reads the blocks, the
attention and feed-forward projections, the sub-layer outputs and the key/value geometry from
the modules and the config of any family. A row here replaces what was read for one family
(``config.model_type``), for a model whose modules do not say what they are -- a projection
named like a key that is not one, an output projection registered before the layers that feed
it. ``tests/models/test_placement.py`` reads every family of the family matrix and checks the
result against what the family's forward pass does, and checks that every row here agrees with
the reading wherever that reading is unambiguous; it fails when a row is no longer needed.

No family of the matrix needs a row at present: the table is empty, not missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .placement import Layout

OVERRIDES: dict[str, Callable[[Layout], Layout]] = {}
"""``model_type`` -> a function from the layout as read to the layout to use."""
