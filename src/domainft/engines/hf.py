"""What every engine on the Hugging Face stack (transformers Trainer, PEFT, DeepSpeed, torchrun) shares: the
Trainer's optimizer and schedule keys, where a stage starts and writes, PEFT's LoRA keys, the ZeRO JSON, the torchrun
rendezvous, YAML tidying, and reading the Trainer's progress from its output. Engines import from here, never from
each other."""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING, Any

from .. import templating as R
from ..errors import EngineError
from .base import Progress
from .folder import OUTPUT, PRETRAIN_OUTPUT

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ..plan import Plan


def output_dir(pretrain: bool = False) -> str:
    """Where a stage writes inside the folder: output/, or output-pretrain/ for continued pre-training."""
    return PRETRAIN_OUTPUT if pretrain else OUTPUT


def starting_point(plan: Plan, pretrain: bool = False, after: str | None = None) -> tuple[str, str | None]:
    """The model and the adapter (None: a fresh one) a stage starts from. After continued pre-training SFT goes on
    from its output (`after`: where the engine leaves it, output-pretrain/ by default): the same LoRA adapter, or
    the full weights; pre-training itself starts from the base model."""
    m = plan.recipe.method
    if pretrain or m.pretrain is None:
        return plan.model_path, None
    after = after or PRETRAIN_OUTPUT
    return (after, None) if m.kind == "full" else (plan.model_path, after)


def eval_steps(plan: Plan) -> int:
    """How often the eval set is scored: training.eval_steps, else at every checkpoint."""
    t = plan.recipe.training
    return t.eval_steps or t.save_steps


def trainer_schedule(plan: Plan, pretrain: bool = False, *, epochs: str = "num_train_epochs",
                     scheduler: str = "lr_scheduler_type") -> dict[str, object]:
    """The HF Trainer's optimizer and schedule keys, in the order every engine's train section lists them.
    Continued pre-training has its own length and learning rate. `epochs`, `scheduler`: an engine's own
    spelling of those two keys (the others every engine on the Trainer spells as the Trainer does)."""
    t = plan.recipe.training
    pt = plan.recipe.method.pretrain if pretrain else None
    return {
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": float(pt.learning_rate or t.learning_rate) if pt else float(t.learning_rate),
        "weight_decay": float(t.weight_decay),
        epochs: float(pt.epochs if pt else t.epochs),
        "max_steps": pt.max_steps if pt else t.max_steps,
        scheduler: t.scheduler,
        "warmup_ratio": float(t.warmup_ratio),
    }


def peft_lora(plan: Plan, *, rank: str = "lora_rank") -> dict[str, object]:
    """PEFT's LoRA shape (rank, alpha, dropout) under the keys LLaMA-Factory and ms-swift spell alike; `rank`: an
    engine's own spelling of the rank key. Which modules it targets each engine spells its own way."""
    m = plan.recipe.method
    return {rank: m.rank, "lora_alpha": m.alpha, "lora_dropout": m.dropout}


def render_yaml(plan: Plan, template: str, values: dict[str, Any], **context: Any) -> str:
    """An engine's YAML config from its template: the recipe's header, the engine's keys (`v`) and the recipe's
    engine_overrides (which the template's `kv` leaves the engine's own keys to), tidied."""
    r = plan.recipe
    return tidy_yaml(R.render_template(template, header=R.header(r.name, plan.recipe_hash), v=values,
                                       overrides=r.engine_overrides, **context))


def tidy_yaml(text: str) -> str:
    """Drop the blank lines Jinja leaves behind; keep one before each `###` section."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    out = []
    for i, ln in enumerate(lines):
        if ln.startswith("###") and i > 0:
            out.append("")
        out.append(ln)
    return "\n".join(out) + "\n"


def deepspeed_files(plan: Plan) -> dict[str, str]:
    """The ZeRO JSON for distributed.deepspeed 2 or 3 ("auto" values: the HF integration fills them)."""
    stage = plan.recipe.distributed.deepspeed
    if not stage:
        return {}
    return {f"ds_zero{stage}.json": R.render_template(f"deepspeed/zero{stage}.json.j2")}


def torchrun_env(plan: Plan, node_rank: str | None = None, *, force_torchrun: bool = True) -> dict[str, str]:
    """FORCE_TORCHRUN and its rendezvous, when several processes (or DeepSpeed) are asked for.
    `node_rank`: what to write for NODE_RANK (the README's `$NODE_RANK`); by default this node's, from the environment.
    `force_torchrun` False: the rendezvous alone, for engines that start torchrun themselves when NPROC_PER_NODE is set."""
    dist = plan.recipe.distributed
    if dist.nnodes * dist.nproc_per_node == 1 and not dist.deepspeed:
        return {}
    return {
        **({"FORCE_TORCHRUN": "1"} if force_torchrun else {}),
        "NNODES": str(dist.nnodes),
        # Each node is started by hand (or by a scheduler) with its own rank in the environment.
        "NODE_RANK": node_rank if node_rank is not None else this_node_rank(dist.nnodes),
        "NPROC_PER_NODE": str(dist.nproc_per_node),
        "MASTER_ADDR": dist.master_addr,
        "MASTER_PORT": str(dist.master_port),
    }


def readme_env(plan: Plan, *, force_torchrun: bool = True) -> str:
    """torchrun_env as a prefix for a README command: `$NODE_RANK` left to the shell with several nodes, every
    recipe value shell-quoted (a README command must never run what a recipe smuggles into it)."""
    rank = "$NODE_RANK" if plan.recipe.distributed.nnodes > 1 else "0"
    env = torchrun_env(plan, node_rank=rank, force_torchrun=force_torchrun)
    return " ".join(f"{k}={v if v == '$NODE_RANK' else shlex.quote(v)}" for k, v in env.items())


def this_node_rank(nnodes: int) -> str:
    """This node's rank from $NODE_RANK, read at launch. Required with several nodes: a silent 0 on every
    node would make torchrun wait for a rendezvous that never completes."""
    raw = os.environ.get("NODE_RANK")
    if raw is None:
        if nnodes > 1:
            raise EngineError(f"distributed.nnodes is {nnodes} but NODE_RANK is not set",
                              where="environment", hint="start each node with NODE_RANK=0..N-1 (0 on the master)")
        return "0"
    if not raw.isdigit() or int(raw) >= nnodes:
        raise EngineError(f"NODE_RANK={raw!r} is not a node rank for distributed.nnodes {nnodes}",
                          where="environment", hint=f"use 0..{nnodes - 1}")
    return raw


def torchrun_args(plan: Plan) -> list[str]:
    """torchrun's own rendezvous options, for engines that put them on their command line."""
    dist = plan.recipe.distributed
    return [f"--nnodes={dist.nnodes}", f"--nproc_per_node={dist.nproc_per_node}",
            f"--rdzv_endpoint={dist.master_addr}:{dist.master_port}", "--rdzv_backend=c10d"]


# A tqdm bar without a description, as the Trainer draws its training and evaluation bars, or ms-swift's "Train:" bar
# ("Loading weights: 3/20", datasets' "Map: 24/24" and ms-swift's "Val:" are not training's); "Total optimization
# steps = 80" is the Trainer naming the training bar's total.
_STEP = re.compile(r"^\s*(?:Train:\s*)?\d+%\|[^|]*\| *(\d+)/(\d+) \[")
_TOTAL = re.compile(r"Total optimization steps = ([\d,]+)")
_LOSS = re.compile(r"""['"]loss['"]:\s*['"]?([0-9.eE+-]+)""")


def parse_trainer_progress(line: str) -> Progress | None:
    """HF Trainer output: tqdm `12/40 [00:05<...` bars, the training's step total, `{'loss': 1.23, ...}` log dicts.
    Evaluation bars look like the training bar; the runner tells them apart by their total (domainft/train.py)."""
    loss = _LOSS.search(line)
    if loss:
        try:
            return Progress(loss=float(loss.group(1)))
        except ValueError:
            return None
    total = _TOTAL.search(line)
    if total:
        return Progress(total=int(total.group(1).replace(",", "")))
    step = _STEP.search(line)
    if step and ("it/s" in line or "s/it" in line):  # a tqdm bar, not some other "a/b [" text
        return Progress(step=int(step.group(1)), total=int(step.group(2)))
    return None
