"""Where a recipe's base model comes from: a wheel (`embedded:*`, made by `embedded.py`), a hub (`domainft/hub.py`'s
client, pulled for the run by `pull.py`), or a local folder; and what training it takes (`memory.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan import Plan


def base_folder(plan: Plan) -> Path:
    """The base model as a local folder, made (embedded) or pulled (hub, pinned to the run's commit) when missing."""
    if plan.is_embedded:
        from .embedded import materialize

        return materialize(plan.recipe.model.base)
    if plan.is_hub:
        from .pull import pull_for_plan

        return pull_for_plan(plan).path
    return Path(plan.model_path)
