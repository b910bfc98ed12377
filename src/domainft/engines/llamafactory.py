"""LLaMA-Factory 0.9.5: `dataset_info.json` + `train.yaml`, run with `llamafactory-cli train`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .. import render as R
from ..errors import EngineError, RecipeError, did_you_mean
from ..plan import Plan
from . import checks as V
from .base import Engine, Launch, Progress, training_values

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


def deepspeed_files(plan: Plan) -> dict[str, str]:
    """The ZeRO JSON for distributed.deepspeed 2 or 3 ("auto" values: the HF integration fills them)."""
    stage = plan.recipe.distributed.deepspeed
    if not stage:
        return {}
    return {f"ds_zero{stage}.json": R.render_template(f"deepspeed/zero{stage}.json.j2")}


def deepspeed_path(plan: Plan) -> str | None:
    stage = plan.recipe.distributed.deepspeed
    return str(plan.render_dir / f"ds_zero{stage}.json") if stage else None


def torchrun_env(plan: Plan) -> dict[str, str]:
    """FORCE_TORCHRUN and its rendezvous, when several processes (or DeepSpeed) are asked for."""
    dist = plan.recipe.distributed
    if dist.nnodes * dist.nproc_per_node == 1 and not dist.deepspeed:
        return {}
    return {
        "FORCE_TORCHRUN": "1",
        "NNODES": str(dist.nnodes),
        # Each node is started by hand (or by a scheduler) with its own rank in the environment.
        "NODE_RANK": node_rank(dist.nnodes),
        "NPROC_PER_NODE": str(dist.nproc_per_node),
        "MASTER_ADDR": dist.master_addr,
        "MASTER_PORT": str(dist.master_port),
    }


def node_rank(nnodes: int) -> str:
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
            "deepspeed": deepspeed_path(plan),
            "dataset": ",".join(dataset_names(plan)),
            "dataset_dir": str(plan.render_dir),
            "template": r.model.chat_template,
            # Empty means the template's own default system prompt.
            "default_system": r.model.system_prompt or None,
            "enable_thinking": r.model.enable_thinking,
            "cutoff_len": t.cutoff_len,
            "packing": t.packing,
            "val_size": t.val_size or None,
            "batch_size": t.batch_size,
        }

    def render(self, plan: Plan) -> dict[str, str]:
        r = plan.recipe
        ds = r.dataset
        datasets = {}
        for name, path in zip(dataset_names(plan), plan.train_files):
            entry: dict[str, Any] = {"file_name": str(path), "formatting": ds.format, "columns": ds.column_map()}
            if ds.format == "sharegpt":
                entry["tags"] = ds.tag_map()
            datasets[name] = entry
        header = R.header(r.name, plan.recipe_hash)
        files = {
            "dataset_info.json": R.render_template("llamafactory/dataset_info.json.j2", datasets=datasets),
            TRAIN_YAML: tidy_yaml(R.render_template(
                "llamafactory/train.yaml.j2", header=header, v=self.values(plan), overrides=r.engine_overrides,
                config_path=str(plan.render_dir / TRAIN_YAML),
            )),
            MERGE_YAML: tidy_yaml(R.render_template(
                "llamafactory/merge.yaml.j2", header=header, v=self.values(plan),
                adapter=str(plan.train_dir), export_dir=str(plan.export_dir / "merged"),
                config_path=str(plan.render_dir / MERGE_YAML),
            )),
        }
        files.update(deepspeed_files(plan))
        return files

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

    def hand_command(self, render_dir: Path) -> str:
        return f"llamafactory-cli train {Path(render_dir) / TRAIN_YAML}"

    def train_launch(self, plan: Plan) -> Launch:
        return Launch(["llamafactory-cli", "train", str(plan.render_dir / TRAIN_YAML)], torchrun_env(plan),
                      plan.render_dir)

    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        # `key=value` after the YAML overrides it (LLaMA-Factory merges them with OmegaConf).
        # The value is YAML-quoted: OmegaConf reads `a #b` as `a` and `a: b` as a mapping.
        argv = ["llamafactory-cli", "export", str(plan.render_dir / MERGE_YAML),
                f"export_dir={R.yaml_value(str(Path(out_dir).resolve()))}"]
        return Launch(argv, {}, plan.render_dir)

    _STEP = re.compile(r"(\d+)/(\d+) \[")
    _LOSS = re.compile(r"""['"]loss['"]:\s*['"]?([0-9.eE+-]+)""")

    def parse_progress(self, line: str) -> Progress | None:
        return parse_hf_progress(line, self._STEP, self._LOSS)


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
