"""LLaMA-Factory 0.9.5: `dataset_info.json` + `train.yaml`, run with `llamafactory-cli train`."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from .. import render as R
from ..errors import EngineError, RecipeError, did_you_mean
from ..plan import Plan
from . import checks as V
from .base import Engine, Launch, Progress, training_values
from .folder import MERGED, OUTPUT, README, data_layout, deepspeed_rel, readme

TRAIN_YAML = "train.yaml"
MERGE_YAML = "merge.yaml"


def tidy_yaml(text: str) -> str:
    """Drop the blank lines Jinja leaves behind; keep one before each `###` section."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    out = []
    for i, ln in enumerate(lines):
        if ln.startswith("###") and i > 0:
            out.append("")
        out.append(ln)
    return "\n".join(out) + "\n"


def dataset_names(plan: Plan) -> list[str]:
    base = plan.dataset_name
    files = plan.train_files
    return [base] if len(files) == 1 else [f"{base}_{i}" for i in range(len(files))]


def eval_dataset_names(plan: Plan) -> list[str]:
    base = plan.dataset_name.removesuffix("_train") + "_val"
    files = plan.val_files
    return [base] if len(files) == 1 else [f"{base}_{i}" for i in range(len(files))]


def deepspeed_files(plan: Plan) -> dict[str, str]:
    """The ZeRO JSON for distributed.deepspeed 2 or 3 ("auto" values: the HF integration fills them)."""
    stage = plan.recipe.distributed.deepspeed
    if not stage:
        return {}
    return {f"ds_zero{stage}.json": R.render_template(f"deepspeed/zero{stage}.json.j2")}


def torchrun_env(plan: Plan, node_rank: str | None = None) -> dict[str, str]:
    """FORCE_TORCHRUN and its rendezvous, when several processes (or DeepSpeed) are asked for.
    `node_rank`: what to write for NODE_RANK (the README's `$NODE_RANK`); by default this node's, from the environment."""
    dist = plan.recipe.distributed
    if dist.nnodes * dist.nproc_per_node == 1 and not dist.deepspeed:
        return {}
    return {
        "FORCE_TORCHRUN": "1",
        "NNODES": str(dist.nnodes),
        # Each node is started by hand (or by a scheduler) with its own rank in the environment.
        "NODE_RANK": node_rank if node_rank is not None else this_node_rank(dist.nnodes),
        "NPROC_PER_NODE": str(dist.nproc_per_node),
        "MASTER_ADDR": dist.master_addr,
        "MASTER_PORT": str(dist.master_port),
    }


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


# training.attention -> LLaMA-Factory's flash_attn; None leaves the engine's own choice ("auto").
LLAMAFACTORY_ATTENTION = {"auto": None, "sdpa": "sdpa", "eager": "disabled", "fa2": "fa2"}


class LlamaFactory(Engine):
    name = "llamafactory"
    config_file = TRAIN_YAML

    def values(self, plan: Plan) -> dict[str, Any]:
        r = plan.recipe
        m, t = r.method, r.training
        targets = m.target_modules
        return {
            **training_values(plan),
            "model_name_or_path": plan.model_path,
            "trust_remote_code": r.model.trust_remote_code,
            # LLaMA-Factory turns gradient checkpointing on unless told not to.
            "disable_gradient_checkpointing": not t.gradient_checkpointing,
            "flash_attn": LLAMAFACTORY_ATTENTION[t.attention],
            "enable_liger_kernel": True if t.liger_kernel else None,
            "finetuning_type": "full" if m.kind == "full" else "lora",
            "lora_rank": m.rank,
            "lora_alpha": m.alpha,
            "lora_dropout": m.dropout,
            "lora_target": targets if targets == "all" else ",".join(targets),
            "quantization_bit": m.quant_bits if m.kind == "qlora" else None,
            "quantization_type": m.quant_type,
            "double_quantization": m.double_quant,
            "deepspeed": deepspeed_rel(plan),
            "dataset": ",".join(dataset_names(plan)),
            # Data paths in dataset_info.json are relative to dataset_dir, which is relative to the working
            # folder: the engine runs from inside the rendered folder.
            "dataset_dir": ".",
            "template": r.model.chat_template,
            # Empty means the template's own default system prompt.
            "default_system": r.model.system_prompt or None,
            "enable_thinking": r.model.enable_thinking,
            "cutoff_len": t.cutoff_len,
            "packing": t.packing,
            # datagen's validation split when there is one, else a slice of train (val_size)
            "eval_dataset": ",".join(eval_dataset_names(plan)) or None,
            "val_size": None if plan.val_files else (t.val_size or None),
            "batch_size": t.batch_size,
        }

    def render(self, plan: Plan) -> dict[str, str]:
        r = plan.recipe
        ds = r.dataset
        datasets = {}
        train, val = data_layout(plan)
        for name, rel in [*zip(dataset_names(plan), train), *zip(eval_dataset_names(plan), val)]:
            entry: dict[str, Any] = {"file_name": rel, "formatting": ds.format, "columns": ds.column_map()}
            if ds.format == "sharegpt":
                entry["tags"] = ds.tag_map()
            datasets[name] = entry
        header = R.header(r.name, plan.recipe_hash)
        files = {
            "dataset_info.json": R.render_template("llamafactory/dataset_info.json.j2", datasets=datasets),
            TRAIN_YAML: tidy_yaml(R.render_template(
                "llamafactory/train.yaml.j2", header=header, v=self.values(plan), overrides=r.engine_overrides,
            )),
            MERGE_YAML: tidy_yaml(R.render_template(
                "llamafactory/merge.yaml.j2", header=header, v=self.values(plan), adapter=OUTPUT, export_dir=MERGED,
            )),
        }
        files.update(deepspeed_files(plan))
        files[README] = readme(
            plan, files, engine="LLaMA-Factory", config_file=TRAIN_YAML,
            model_key=f"`model_name_or_path` in `{TRAIN_YAML}` and `{MERGE_YAML}`",
            install=f"LLaMA-Factory {V.known(self.name)['version']} installed (`llamafactory-cli` on PATH)",
            steps=[("Train (the adapter and checkpoints go to `output/`; a rerun resumes from the last checkpoint)",
                    [self._train_command(plan)]),
                   ("Merge the adapter into full weights in `merged/`", [f"llamafactory-cli export {MERGE_YAML}"])],
            notes=self._notes(plan),
        )
        return files

    def _train_command(self, plan: Plan) -> str:
        env = torchrun_env(plan, node_rank="$NODE_RANK" if plan.recipe.distributed.nnodes > 1 else "0")
        # Recipe values are shell-quoted: a README command must never run what a recipe smuggles into it.
        prefix = " ".join(f"{k}={v if v == '$NODE_RANK' else shlex.quote(v)}" for k, v in env.items())
        return f"{prefix} llamafactory-cli train {TRAIN_YAML}".strip()

    def _notes(self, plan: Plan) -> list[str]:
        if plan.recipe.distributed.nnodes == 1:
            return []
        return ["Several nodes: copy the folder to every node and run the train command there with `NODE_RANK` set "
                "(0 on the master, 1.. on the others); the other variables come from the recipe's `distributed` "
                "section. Only node 0 writes the adapter."]

    def check(self, plan: Plan, files: dict[str, str]) -> None:
        r = plan.recipe
        V.check_overrides(self.name, r.engine_overrides)
        templates = V.known(self.name)["templates"]
        template = r.engine_overrides.get("template", r.model.chat_template)
        if template not in templates:
            raise RecipeError(f"LLaMA-Factory has no chat template '{template}'", where="model.chat_template",
                              hint=did_you_mean(template, templates))
        V.check_targets(plan)
        V.check_chat_template(plan)
        for name in (TRAIN_YAML, MERGE_YAML):
            config = R.parse_back(name, files[name])
            V.check_rendered_keys(self.name, config, name)
            _check_no_interpolation(config, r.engine_overrides, name)
        V.check_dataset(plan)

    def config(self, files: dict[str, str]) -> dict[str, Any]:
        return R.parse_back(TRAIN_YAML, files[TRAIN_YAML])

    def hand_command(self) -> str:
        return f"llamafactory-cli train {TRAIN_YAML}"

    # The rendered files write into the folder (output/, merged/); a run keeps them in its own folders instead.
    # `key=value` after the YAML overrides it (LLaMA-Factory merges them with OmegaConf). The value is
    # YAML-quoted: OmegaConf reads `a #b` as `a` and `a: b` as a mapping.
    def train_launch(self, plan: Plan) -> Launch:
        argv = ["llamafactory-cli", "train", TRAIN_YAML, _cli_set("output_dir", plan.train_dir)]
        return Launch(argv, torchrun_env(plan), plan.render_dir)

    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        argv = ["llamafactory-cli", "export", MERGE_YAML, _cli_set("adapter_name_or_path", plan.train_dir),
                _cli_set("export_dir", out_dir)]
        return Launch(argv, {}, plan.render_dir)

    _STEP = re.compile(r"(\d+)/(\d+) \[")
    _LOSS = re.compile(r"""['"]loss['"]:\s*['"]?([0-9.eE+-]+)""")

    def parse_progress(self, line: str) -> Progress | None:
        return parse_hf_progress(line, self._STEP, self._LOSS)


def _cli_set(key: str, path: Path) -> str:
    return f"{key}={R.yaml_value(str(Path(path).resolve()))}"


# Where a rendered value comes from, for the error message.
_RECIPE_KEY = {"default_system": "model.system_prompt", "model_name_or_path": "model.base", "output_dir": "run_dir",
               "dataset_dir": "run_dir", "deepspeed": "run_dir", "export_dir": "run_dir",
               "adapter_name_or_path": "run_dir"}


def _check_no_interpolation(config: dict[str, Any], overrides: dict[str, Any], file: str) -> None:
    """LLaMA-Factory loads its YAML with OmegaConf, which fails on a malformed `${...}` at launch: refuse it now."""
    for key, value in config.items():
        if "${" in json.dumps(value):
            where = f"engine_overrides.{key}" if key in overrides else _RECIPE_KEY.get(key, file)
            raise RecipeError(f"'${{' cannot appear in LLaMA-Factory's '{key}' (OmegaConf reads it as an "
                              f"interpolation)", where=where)


def parse_hf_progress(line: str, step_re: re.Pattern, loss_re: re.Pattern) -> Progress | None:
    """HF Trainer output: tqdm `12/40 [00:05<...` bars and `{'loss': 1.23, ...}` log dicts."""
    loss = loss_re.search(line)
    if loss:
        try:
            return Progress(loss=float(loss.group(1)))
        except ValueError:
            return None
    step = step_re.search(line)
    if step and ("it/s" in line or "s/it" in line):  # a tqdm bar, not some other "a/b [" text
        return Progress(step=int(step.group(1)), total=int(step.group(2)))
    return None
