"""launch.sbatch: the rendered folder's Slurm batch script, from templates/slurm/launch.sbatch.j2.

Rendered when `distributed.launcher` is slurm. One task per node; the rendezvous address is the job's first node,
NODE_RANK the task's rank, and each task runs its engine's own multi-node launcher (`Engine.cluster_command`).
Running and following the job is `engines/slurm.py`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import templating as R

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ..plan import Plan
    from .base import Engine

SCRIPT = "launch.sbatch"
DESCRIPTION = "the Slurm batch script: one task per node, each through the engine's own torchrun launcher"
LOGS = "logs"  # in the rendered folder: logs/<job id>/node-<rank>.log, .exit, and the batch step's exit


def cluster_files(plan: Plan, engine: Engine) -> dict[str, str]:
    """{launch.sbatch: text} with the slurm launcher, else nothing."""
    dist = plan.recipe.distributed
    if dist.launcher != "slurm":
        return {}
    return {SCRIPT: R.render_template(
        "slurm/launch.sbatch.j2", header=R.header(plan.recipe.name, plan.recipe_hash), engine=engine.label,
        job_name=plan.recipe.name, nnodes=dist.nnodes, nproc_per_node=dist.nproc_per_node,
        master_port=dist.master_port, slurm=dist.slurm.model_dump(), config_file=engine.config_file,
        command=engine.cluster_command(plan),
    )}
