"""Axolotl 0.19.0: one `axolotl.yml`, run with `axolotl train axolotl.yml --launcher python`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import templating as R
from ...chat_formats import alpaca_formats, system_turn
from ...errors import RecipeError, did_you_mean
from .. import checks as V
from ..base import Engine, Launch, Progress, Readme, move_up
from ..folder import PRETRAIN_OUTPUT, data_layout, deepspeed_rel, pretrain_layout
from ..hf import (eval_steps, output_dir, parse_trainer_progress, peft_lora, render_yaml, starting_point,
                  torchrun_args, trainer_schedule)
from ..venv import Spec

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ...plan import Plan

CONFIG = "axolotl.yml"
PRETRAIN_CONFIG = "axolotl-pretrain.yml"
PREPARED = "prepared"  # `axolotl preprocess` writes the tokenized data here (relative to the rendered folder)
# Without it Axolotl hangs at exit when offline.
NO_TRACKING = "AXOLOTL_DO_NOT_TRACK=1"
# Alpaca data has no system column unless the recipe maps one; this name makes sure a stray
# `system` column in the file is not picked up by Axolotl's default `field_system: system`.
NO_SYSTEM_COLUMN = "__domainft_no_system_column__"


# training.attention -> Axolotl's attn_implementation; None leaves the engine's own choice ("auto").
AXOLOTL_ATTENTION = {"auto": None, "sdpa": "sdpa", "eager": "eager", "fa2": "flash_attention_2"}
# training.report_to -> Axolotl's switch for that logger (it sets the Trainer's report_to from these).
AXOLOTL_REPORT = {"tensorboard": "use_tensorboard", "wandb": "use_wandb", "mlflow": "use_mlflow", "none": None}
# training.liger_kernel: Axolotl's Liger plugin with every kernel a Qwen2/Llama decoder has.
LIGER = {"plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_rope": True, "liger_rms_norm": True,
         "liger_glu_activation": True, "liger_fused_linear_cross_entropy": True}


class Axolotl(Engine):
    name = "axolotl"
    package = "axolotl"
    label = "Axolotl"
    config_file = CONFIG
    venv = Spec(probe="axolotl")
    run_folder_keys = ("output_dir", "dataset_prepared_path")
    # validate_config drops unknown keys without a word: compare against the schema too.
    # Plugins (Liger) are registered first, as `axolotl train` does, so their options join the schema.
    deep_check_code = (
        "from axolotl.utils.config import validate_config, prepare_plugins\n"
        "from axolotl.utils.dict import DictDefault\n"
        "from axolotl.utils.schemas.config import AxolotlInputConfig\n"
        "if cfg.get('plugins'):\n"
        "    from axolotl.integrations.config import merge_input_args\n"
        "    prepare_plugins(DictDefault(cfg))\n"
        "    AxolotlInputConfig = merge_input_args()[1]\n"
        "dropped = [k for k in cfg if k not in AxolotlInputConfig.model_fields]\n"
        "if dropped: raise KeyError('unknown key(s) the engine would silently drop: ' + ', '.join(dropped))\n"
        "validate_config(DictDefault(cfg))\n"
    )
    descriptions = {
        CONFIG: "the Axolotl config (training and merge)",
        PRETRAIN_CONFIG: f"continued pre-training on the raw chunks, run before training (it writes "
                         f"`{PRETRAIN_OUTPUT}/`, where training starts from)",
    }
    # The recipe key that turns a plugin on, for the hint when one of its options is set without it.
    plugin_switches = {"axolotl.integrations.liger.LigerPlugin": "training.liger_kernel: true"}

    def datasets(self, plan: Plan, part: int = 0) -> list[dict[str, Any]]:
        """Axolotl dataset entries for the training files (part 0) or the validation files (part 1)."""
        ds, model = plan.recipe.dataset, plan.recipe.model
        cols = ds.column_map()
        out = []
        for rel in data_layout(plan)[part]:
            entry: dict[str, Any] = {"path": rel, "ds_type": "json"}
            if ds.format == "sharegpt":
                tags = ds.tag_map()
                entry.update({
                    "type": "chat_template",
                    "field_messages": cols["messages"],
                    "message_property_mappings": {"role": tags["role_tag"], "content": tags["content_tag"]},
                    "roles": {"user": [tags["user_tag"]], "assistant": [tags["assistant_tag"]],
                              "system": [tags["system_tag"]]},
                })
            else:
                # Axolotl's user-defined prompt type, with format strings spelling out the model's own
                # chat template (templates/_shared/alpaca_formats.yaml): the same text inference sees.
                fmt = alpaca_formats().get(model.chat_template)
                if fmt is None:  # check() reports this as a RecipeError first
                    fmt = {"system_format": "{system}", "format": "{instruction}\n{input}",
                           "no_input_format": "{instruction}", "default_system": ""}
                entry["type"] = {
                    "field_instruction": cols["prompt"],
                    "field_input": cols.get("query", "input"),
                    "field_output": cols["response"],
                    "field_system": cols.get("system", NO_SYSTEM_COLUMN),
                    "system_prompt": system_turn(plan.recipe) or fmt["default_system"],
                    "system_format": fmt["system_format"],
                    "format": fmt["format"],
                    "no_input_format": fmt["no_input_format"],
                }
            if part == 1:
                entry["split"] = "train"  # a local JSON file loads as one split named train
            out.append(entry)
        return out

    def values(self, plan: Plan, pretrain: bool = False) -> dict[str, dict[str, Any]]:
        """axolotl.yml's keys, section by section, as the template prints them (a None value is left out).
        `pretrain`: axolotl-pretrain.yml's instead: the raw chunks as completion text, from the base model, into
        output-pretrain/, with no eval set."""
        r = plan.recipe
        m, t = r.method, r.training
        adapter = None if m.kind == "full" else m.kind
        four_bit = m.kind == "qlora" and m.quant_bits == 4
        model, lora_dir = starting_point(plan, pretrain)
        if pretrain:
            train = [{"path": rel, "ds_type": "json", "type": "completion", "field": "text"}
                     for rel in pretrain_layout(plan)]
            test: list[dict[str, Any]] = []
        else:
            train, test = self.datasets(plan), self.datasets(plan, 1)
        val_set_size = float(t.val_size) if t.val_size and not plan.val_files and not pretrain else None
        report = AXOLOTL_REPORT[t.report_to]
        return {
            "model": {
                "base_model": model,
                "trust_remote_code": r.model.trust_remote_code,
                "chat_template": "tokenizer_default",
                # chat_template data uses the tokenizer's template; its system prompt comes from the recipe.
                "default_system_message": (r.model.system_prompt or None)
                if r.dataset.format == "sharegpt" and r.model.system_prompt_in == "system" else None,
                "attn_implementation": AXOLOTL_ATTENTION[t.attention],
                **(LIGER if t.liger_kernel else {}),
            },
            "method": {
                "adapter": adapter,
                "load_in_4bit": True if four_bit else None,
                "load_in_8bit": True if m.kind == "qlora" and m.quant_bits == 8 else None,
                "bnb_config_kwargs": {"bnb_4bit_quant_type": m.quant_type, "bnb_4bit_use_double_quant": m.double_quant}
                if four_bit else None,
                **({} if adapter is None else {
                    "lora_model_dir": lora_dir,
                    **peft_lora(plan, rank="lora_r"),
                    "lora_target_linear": True if m.target_modules == "all" else None,
                    "lora_target_modules": None if m.target_modules == "all" else list(m.target_modules),
                }),
            },
            "lora_kernels": {} if adapter is None else {
                "lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False,
                "lora_embedding_kernel": False,
            },
            "distributed": {"deepspeed": deepspeed_rel(plan)},
            # lists of dataset entries, written one JSON entry a line
            "datasets": {"datasets": train, **({"test_datasets": test} if test else {})},
            "dataset": {
                "dataset_prepared_path": f"{PREPARED}-pretrain" if pretrain else PREPARED,
                "val_set_size": val_set_size,
                "sequence_len": t.cutoff_len,
            },
            "examples": {
                "excess_length_strategy": "truncate",
                "sample_packing": t.packing,
                "eval_sample_packing": False,
                "train_on_inputs": False,
            },
            "output": {
                "output_dir": output_dir(pretrain),
                "logging_steps": t.logging_steps,
                "save_steps": t.save_steps,
                "save_only_model": False,
                **({report: True} if report else {}),
            },
            "resume": {"auto_resume_from_checkpoints": True},
            "train": {
                "micro_batch_size": t.batch_size,
                **trainer_schedule(plan, pretrain, epochs="num_epochs", scheduler="lr_scheduler"),
                "optimizer": "adamw_torch",
                "seed": t.seed,
                "bf16": t.precision == "bf16",
                "fp16": t.precision == "fp16",
                "tf32": False,
                "gradient_checkpointing": t.gradient_checkpointing,
                **({"eval_steps": eval_steps(plan)} if val_set_size or test else {}),
            },
        }

    def config_files(self, plan: Plan) -> dict[str, str]:
        files = {CONFIG: render_yaml(plan, "axolotl/axolotl.yml.j2", self.values(plan))}
        if plan.recipe.method.pretrain is not None:
            files[PRETRAIN_CONFIG] = render_yaml(plan, "axolotl/axolotl.yml.j2", self.values(plan, pretrain=True))
        return files

    def readme(self, plan: Plan) -> Readme:
        r = plan.recipe
        train = f"{NO_TRACKING} {shlex.join(self._train_argv(plan, CONFIG))}"  # recipe values shell-quoted
        pretrain = f"{NO_TRACKING} {shlex.join(self._train_argv(plan, PRETRAIN_CONFIG))}"
        if plan.recipe.distributed.nnodes > 1:
            train = train.replace("--nnodes", "--node_rank=$NODE_RANK --nnodes")
            pretrain = pretrain.replace("--nnodes", "--node_rank=$NODE_RANK --nnodes")
        first = ([(f"Continue pre-training on the raw chunks first (into `{PRETRAIN_OUTPUT}/`; training then goes on "
                   "from it)", [pretrain])] if r.method.pretrain is not None else [])
        return Readme(
            model_key=f"`base_model` in `{CONFIG}`" if r.method.pretrain is None else
            f"`base_model` in `{PRETRAIN_CONFIG}`" + (f" and `{CONFIG}`" if r.method.kind != "full" else ""),
            install=f"Axolotl {self.known()['version']} installed (`axolotl` on PATH)",
            steps=first + [("Tokenize the data into `prepared/` (optional: train does it when needed), then train (the "
                    "adapter and checkpoints go to `output/`; a rerun resumes from the last checkpoint)",
                    [f"{NO_TRACKING} axolotl preprocess {CONFIG}", train]),
                   ("Merge the adapter into full weights in `output/merged/`",
                    [f"{NO_TRACKING} axolotl merge-lora {CONFIG}"])] if r.method.kind != "full" else
                  [("Tokenize the data into `prepared/`, then train (the weights go to `output/`)",
                    [f"{NO_TRACKING} axolotl preprocess {CONFIG}", train])],
            notes=["`--launcher python` runs in this process; accelerate's launcher would pin CPU threads to 1."]
            + (["Several nodes: copy the folder to every node and run the train command there with `NODE_RANK` set "
                "(0 on the master)."] if plan.recipe.distributed.nnodes > 1 else []),
        )

    def check_recipe(self, plan: Plan) -> None:
        r = plan.recipe
        V.check_overrides(self, r.engine_overrides, plugins=LIGER["plugins"] if r.training.liger_kernel else ())
        if r.dataset.format == "alpaca" and r.model.chat_template not in alpaca_formats():
            raise RecipeError(
                f"Axolotl has no alpaca prompt format for chat template '{r.model.chat_template}'",
                where="model.chat_template",
                hint=did_you_mean(r.model.chat_template, alpaca_formats())
                or "use dataset.format sharegpt, or add it to templates/_shared/alpaca_formats.yaml",
            )
        if r.model.enable_thinking:
            raise RecipeError("Axolotl runs here use the tokenizer's template without thinking blocks",
                              where="model.enable_thinking", hint="use engine llamafactory for R1-style training")

    def check_files(self, plan: Plan, files: dict[str, str]) -> None:
        V.check_rendered_keys(self, self.config(files), CONFIG)
        if PRETRAIN_CONFIG in files:
            V.check_rendered_keys(self, R.parse_back(PRETRAIN_CONFIG, files[PRETRAIN_CONFIG]), PRETRAIN_CONFIG)

    def chat_templates(self) -> dict[str, list[str]]:
        return {name: [v for k, v in fmt.items() if k != "default_system"] for name, fmt in alpaca_formats().items()}

    def written_template_text(self, plan: Plan) -> list[str]:
        # sharegpt data goes through the tokenizer's own chat template (`chat_template: tokenizer_default`)
        return super().written_template_text(plan) if plan.recipe.dataset.format == "alpaca" else []

    def config(self, files: dict[str, str]) -> dict[str, Any]:
        return R.parse_back(CONFIG, files[CONFIG])

    def hand_command(self) -> str:
        return f"{NO_TRACKING} axolotl train {CONFIG} --launcher python"

    @staticmethod
    def _train_argv(plan: Plan, config: str, *options: str) -> list[str]:
        # --launcher python: the accelerate launcher pins OMP threads to 1 (slow on CPU).
        # Several processes go through torchrun, which reads the rendezvous from its own options.
        dist = plan.recipe.distributed
        if dist.nnodes * dist.nproc_per_node == 1:
            return ["axolotl", "train", config, *options, "--launcher", "python"]
        return ["axolotl", "train", config, *options, "--launcher", "torchrun", "--", *torchrun_args(plan)]

    # The rendered file writes into the folder (output/, prepared/); a run keeps those in its own folders
    # instead, through Axolotl's command-line overrides of config keys.
    def train_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        return Launch(self._train_argv(plan, CONFIG, *self.run_folder_args(plan, resume_from)), {}, plan.render_dir)

    def run_folder_args(self, plan: Plan, resume_from: Path | None = None) -> list[str]:
        # it resumes from its output folder by itself (auto_resume_from_checkpoints)
        return [f"--output-dir={plan.train_dir.resolve()}",
                f"--dataset-prepared-path={(plan.run_dir / 'train' / 'axolotl-prepared').resolve()}",
                *self._after_pretrain(plan)]

    def cluster_command(self, plan: Plan) -> str:
        # Options for the config go before `--launcher`; torchrun's own rendezvous options after `--`. Static
        # rendezvous: node 0 hosts it and holds global rank 0, as with LLaMA-Factory's launcher. The rendezvous id
        # must be the same on every node: without one Axolotl adds a random id per node, and they never meet.
        return (f'{NO_TRACKING} axolotl train {CONFIG} "$@" --launcher torchrun -- --nnodes="$NNODES" '
                '--node_rank="$NODE_RANK" --nproc_per_node="$NPROC_PER_NODE" '
                '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_backend=static --rdzv_id="$SLURM_JOB_ID"')

    @staticmethod
    def _after_pretrain(plan: Plan) -> list[str]:
        """Go on from the run's own pre-training output: its LoRA adapter, or its full weights."""
        if plan.recipe.method.pretrain is None:
            return []
        key = "--base-model" if plan.recipe.method.kind == "full" else "--lora-model-dir"
        return [f"{key}={plan.pretrain_dir.resolve()}"]

    def pretrain_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        prepared = (plan.run_dir / "pretrain" / "axolotl-prepared").resolve()
        argv = self._train_argv(plan, PRETRAIN_CONFIG, f"--output-dir={plan.pretrain_dir.resolve()}",
                                f"--dataset-prepared-path={prepared}")
        return Launch(argv, {}, plan.render_dir)

    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        # merge-lora writes into <output_dir>/merged; after_merge moves it to out_dir.
        argv = ["axolotl", "merge-lora", CONFIG, f"--lora-model-dir={plan.train_dir.resolve()}",
                f"--output-dir={Path(out_dir).resolve()}"]
        return Launch(argv, {}, plan.render_dir)

    def after_merge(self, out_dir: Path) -> None:
        move_up(Path(out_dir) / "merged")  # merge-lora writes into <output_dir>/merged

    def parse_progress(self, line: str) -> Progress | None:
        return parse_trainer_progress(line)


ENGINE = Axolotl
