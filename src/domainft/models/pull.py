"""A run's hub model: pulled for a plan (pinned to the commit its record names), or waited for on a worker node.
The hub client itself (layout, resume, checksums, pins) is hub.py's and knows no plan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..fsutil import atomic_write_json
from ..hub import Pulled, is_complete, pinned_path, pinned_sha, pull, read_record, wait_for_pull

if TYPE_CHECKING:
    from ..plan import Plan


def pull_for_plan(plan: Plan) -> Pulled:
    """The run's hub model on this machine, pinned: pulled when missing (never on a worker node, which waits for
    node 0's pull instead), and the run's record written when it is new."""
    m = plan.recipe.model
    if plan.is_worker_node:
        pulled = wait_for_pull(m, plan.model_record)
    else:
        pulled = pull(m.hub, m.base, m.revision, pin=pinned_sha(m, plan.model_record), where="model.base")
    record = pulled.record()
    if read_record(plan.model_record) != record:
        atomic_write_json(plan.model_record, record)
    return pulled


def missing_reason(plan: Plan) -> str | None:
    """Why the run's model is not usable on this machine yet (None: pulled and complete)."""
    path = pinned_path(plan.recipe.model, plan.model_record)
    if path is None:
        return "not pulled yet"
    return None if is_complete(path) else f"snapshot {path.name[:12]} is not on this machine"
