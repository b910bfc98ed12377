"""LLaMA-Factory 0.9.5: `dataset_info.json` + `train.yaml`, run with `llamafactory-cli train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import templating as R
from ...chat_formats import system_turn
from ...errors import RecipeError, did_you_mean
from .. import checks as V
from ..base import Engine, Launch, Progress, Readme
from ..folder import MERGED, OUTPUT, PRETRAIN_OUTPUT, data_layout, deepspeed_rel, pretrain_layout
from ..hf import (eval_steps, output_dir, parse_trainer_progress, peft_lora, readme_env, render_yaml, starting_point,
                  torchrun_env, trainer_schedule)
from ..venv import Spec

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ...plan import Plan

TRAIN_YAML = "train.yaml"
MERGE_YAML = "merge.yaml"
PRETRAIN_YAML = "pretrain.yaml"


def dataset_names(plan: Plan) -> list[str]:
    base = plan.dataset_name
    files = plan.train_files
    return [base] if len(files) == 1 else [f"{base}_{i}" for i in range(len(files))]


def pretrain_dataset_name(plan: Plan) -> str:
    return plan.dataset_name.removesuffix("_train") + "_pretrain"


def eval_dataset_names(plan: Plan) -> list[str]:
    base = plan.dataset_name.removesuffix("_train") + "_val"
    files = plan.val_files
    return [base] if len(files) == 1 else [f"{base}_{i}" for i in range(len(files))]


# training.attention -> LLaMA-Factory's flash_attn; None leaves the engine's own choice ("auto").
LLAMAFACTORY_ATTENTION = {"auto": None, "sdpa": "sdpa", "eager": "disabled", "fa2": "fa2"}


class LlamaFactory(Engine):
    name = "llamafactory"
    package = "llamafactory"
    label = "LLaMA-Factory"
    config_file = TRAIN_YAML
    # DS_BUILD_OPS=0: DeepSpeed's C++/CUDA ops are JIT-built when first used, so the install needs no compiler.
    venv = Spec(no_isolation=("deepspeed==0.19.8",), uninstall=("torchvision",), probe="llamafactory")
    run_folder_keys = ("output_dir", "dataset_dir", "export_dir", "logging_dir", "tokenized_path")
    # get_train_args rejects unknown keys; it checks no types, template names, dataset names or model paths.
    deep_check_code = "from llamafactory.hparams import get_train_args\nget_train_args(cfg)\n"
    descriptions = {
        TRAIN_YAML: "the LLaMA-Factory training config",
        MERGE_YAML: "the LLaMA-Factory config that merges the adapter into full weights",
        "dataset_info.json": "names the training files and their columns for LLaMA-Factory",
        PRETRAIN_YAML: f"continued pre-training on the raw chunks, run before training (it writes `{PRETRAIN_OUTPUT}/`, "
                       "where training starts from)",
    }

    def values(self, plan: Plan, pretrain: bool = False) -> dict[str, dict[str, Any]]:
        """train.yaml's keys, section by section, as the template prints them (a None value is left out).
        `pretrain`: pretrain.yaml's instead: stage pt on the raw chunks, from the base model, into output-pretrain/,
        with no eval set (the validation split is question-answer pairs, not raw text)."""
        r = plan.recipe
        m, t = r.method, r.training
        targets = m.target_modules
        model, adapter = starting_point(plan, pretrain)
        eval_dataset = None if pretrain else ",".join(eval_dataset_names(plan)) or None
        # datagen's validation split when there is one, else a slice of train (val_size)
        val_size = None if pretrain or plan.val_files else (t.val_size or None)
        return {
            "model": {
                "model_name_or_path": model,
                "adapter_name_or_path": adapter,
                "trust_remote_code": r.model.trust_remote_code,
                # LLaMA-Factory turns gradient checkpointing on unless told not to.
                "disable_gradient_checkpointing": not t.gradient_checkpointing,
                "flash_attn": LLAMAFACTORY_ATTENTION[t.attention],
                "enable_liger_kernel": True if t.liger_kernel else None,
            },
            "method": {
                "stage": "pt" if pretrain else "sft",
                "do_train": True,
                "finetuning_type": "full" if m.kind == "full" else "lora",
                **({} if m.kind == "full" else {
                    **peft_lora(plan), "lora_target": targets if targets == "all" else ",".join(targets)}),
                **({} if m.kind != "qlora" else {
                    "quantization_bit": m.quant_bits, "quantization_type": m.quant_type,
                    "double_quantization": m.double_quant}),
                "deepspeed": deepspeed_rel(plan),
            },
            "dataset": {
                "dataset": pretrain_dataset_name(plan) if pretrain else ",".join(dataset_names(plan)),
                # Data paths in dataset_info.json are relative to dataset_dir, which is relative to the working
                # folder: the engine runs from inside the rendered folder.
                "dataset_dir": ".",
                "template": r.model.chat_template,
                # The recipe's system prompt, else the chat template's default, named (None: LLaMA-Factory's own).
                "default_system": system_turn(r),
                "enable_thinking": r.model.enable_thinking,
                "cutoff_len": t.cutoff_len,
                "packing": t.packing,
                "eval_dataset": eval_dataset,
                "val_size": val_size,
                "overwrite_cache": True,
            },
            "output": {
                "output_dir": output_dir(pretrain),
                "logging_steps": t.logging_steps,
                "save_steps": t.save_steps,
                "plot_loss": False,
                "report_to": t.report_to,
            },
            "resume": {"overwrite_output_dir": False, "save_only_model": False},
            "train": {
                "per_device_train_batch_size": t.batch_size,
                **trainer_schedule(plan, pretrain),
                "seed": t.seed,
                "bf16": t.precision == "bf16",
                "fp16": t.precision == "fp16",
                "ddp_timeout": 180000000,
            },
            "eval": {
                "per_device_eval_batch_size": t.batch_size,
                "eval_strategy": "steps",
                "eval_steps": eval_steps(plan),
            } if val_size or eval_dataset else {},
        }

    def merge_values(self, plan: Plan) -> dict[str, str | None]:
        """merge.yaml's keys -> their YAML text (None: left out): the adapter in output/ merged into full weights in
        merged/. `lora` and `cpu` stand bare, as in LLaMA-Factory's own examples."""
        r = plan.recipe
        y = R.yaml_value
        system = system_turn(r)
        return {
            "model_name_or_path": y(starting_point(plan)[0]),
            "adapter_name_or_path": y(OUTPUT),
            "template": y(r.model.chat_template),
            "default_system": None if system is None else y(system),
            "trust_remote_code": y(r.model.trust_remote_code),
            "finetuning_type": "lora",
            "export_dir": y(MERGED),
            "export_size": "5",
            "export_device": "cpu",
            "export_legacy_format": "false",
        }

    def config_files(self, plan: Plan) -> dict[str, str]:
        r = plan.recipe
        ds = r.dataset
        datasets = {}
        train, val = data_layout(plan)
        for name, rel in [*zip(dataset_names(plan), train), *zip(eval_dataset_names(plan), val)]:
            entry: dict[str, Any] = {"file_name": rel, "formatting": ds.format, "columns": ds.column_map()}
            if ds.format == "sharegpt":
                entry["tags"] = ds.tag_map()
            datasets[name] = entry
        for rel in pretrain_layout(plan):  # raw text: one `text` column read as the prompt
            datasets[pretrain_dataset_name(plan)] = {"file_name": rel, "columns": {"prompt": "text"}}
        files = {
            "dataset_info.json": R.render_template("llamafactory/dataset_info.json.j2", datasets=datasets),
            TRAIN_YAML: render_yaml(plan, "llamafactory/train.yaml.j2", self.values(plan), config=TRAIN_YAML),
            MERGE_YAML: render_yaml(plan, "llamafactory/merge.yaml.j2", self.merge_values(plan)),
        }
        if r.method.pretrain is not None:
            files[PRETRAIN_YAML] = render_yaml(plan, "llamafactory/train.yaml.j2", self.values(plan, pretrain=True),
                                               config=PRETRAIN_YAML)
        return files

    def readme(self, plan: Plan) -> Readme:
        r = plan.recipe
        steps = [("Train (the adapter and checkpoints go to `output/`; a rerun resumes from the last checkpoint)",
                  [self._train_command(plan)]),
                 ("Merge the adapter into full weights in `merged/`", [f"llamafactory-cli export {MERGE_YAML}"])]
        if r.method.pretrain is not None:
            steps.insert(0, (f"Continue pre-training on the raw chunks first (into `{PRETRAIN_OUTPUT}/`; training "
                             "then goes on from it)", [self._train_command(plan, PRETRAIN_YAML)]))
        return Readme(
            model_key=f"`model_name_or_path` in `{TRAIN_YAML}` and `{MERGE_YAML}`" if r.method.pretrain is None else
            f"`model_name_or_path` in `{PRETRAIN_YAML}`" + (f" and `{MERGE_YAML}`" if r.method.kind != "full" else ""),
            install=f"LLaMA-Factory {self.known()['version']} installed (`llamafactory-cli` on PATH)",
            steps=steps, notes=self._notes(plan),
        )

    def _train_command(self, plan: Plan, config: str = TRAIN_YAML) -> str:
        return f"{readme_env(plan)} llamafactory-cli train {config}".strip()

    def _notes(self, plan: Plan) -> list[str]:
        if plan.recipe.distributed.nnodes == 1:
            return []
        return ["Several nodes: copy the folder to every node and run the train command there with `NODE_RANK` set "
                "(0 on the master, 1.. on the others); the other variables come from the recipe's `distributed` "
                "section. Only node 0 writes the adapter."]

    def check_recipe(self, plan: Plan) -> None:
        r = plan.recipe
        V.check_overrides(self, r.engine_overrides)
        templates = self.known()["templates"]
        template = self.template_name(plan)
        if template not in templates:
            raise RecipeError(f"LLaMA-Factory has no chat template '{template}'", where="model.chat_template",
                              hint=did_you_mean(template, templates))

    def check_files(self, plan: Plan, files: dict[str, str]) -> None:
        for name in (TRAIN_YAML, MERGE_YAML, PRETRAIN_YAML):
            if name not in files:
                continue
            config = R.parse_back(name, files[name])
            V.check_rendered_keys(self, config, name)
            _check_no_interpolation(config, plan.recipe.engine_overrides, name)

    def chat_templates(self) -> dict[str, list[str]]:
        return self.known().get("template_text", {})

    def template_name(self, plan: Plan) -> str:
        # an engine_overrides.template wins over the recipe's
        return plan.recipe.engine_overrides.get("template", plan.recipe.model.chat_template)

    def config(self, files: dict[str, str]) -> dict[str, Any]:
        return R.parse_back(TRAIN_YAML, files[TRAIN_YAML])

    def hand_command(self) -> str:
        return f"llamafactory-cli train {TRAIN_YAML}"

    # The rendered files write into the folder (output/, merged/); a run keeps them in its own folders instead.
    # `key=value` after the YAML overrides it (LLaMA-Factory merges them with OmegaConf). The value is
    # YAML-quoted: OmegaConf reads `a #b` as `a` and `a: b` as a mapping.
    def train_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        argv = ["llamafactory-cli", "train", TRAIN_YAML, *self.run_folder_args(plan, resume_from)]
        return Launch(argv, torchrun_env(plan), plan.render_dir)

    def pretrain_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        argv = ["llamafactory-cli", "train", PRETRAIN_YAML, _cli_set("output_dir", plan.pretrain_dir)]
        return Launch(argv, torchrun_env(plan), plan.render_dir)

    def run_folder_args(self, plan: Plan, resume_from: Path | None = None) -> list[str]:
        args = [_cli_set("output_dir", plan.train_dir)]  # it resumes from its output folder by itself
        if plan.recipe.method.pretrain is not None:  # go on from the run's own pre-training output
            key = "model_name_or_path" if plan.recipe.method.kind == "full" else "adapter_name_or_path"
            args.append(_cli_set(key, plan.pretrain_dir))
        return args

    def cluster_command(self, plan: Plan) -> str:
        # LLaMA-Factory's launcher starts torchrun with NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT.
        return f'FORCE_TORCHRUN=1 llamafactory-cli train {TRAIN_YAML} "$@"'

    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        argv = ["llamafactory-cli", "export", MERGE_YAML, _cli_set("adapter_name_or_path", plan.train_dir),
                _cli_set("export_dir", out_dir)]
        return Launch(argv, {}, plan.render_dir)

    def parse_progress(self, line: str) -> Progress | None:
        return parse_trainer_progress(line)


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


ENGINE = LlamaFactory
