"""ms-swift 4.6 (ModelScope's SWIFT): one `sft.yaml`, run with `swift sft sft.yaml`; merged with `swift export`.

Widely used for Chinese-domain tuning of Qwen, DeepSeek and GLM models. Its own venv like the other engines
(it pins trl<1, transformers 5.19). Offline it must be told to use the Hugging Face hub (`USE_HF=1`) and not to
look the model up online (`check_model: false`); it writes into a fixed folder only with `add_version: false`.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ... import templating as R
from ...chat_formats import empty_think, system_turn
from ...errors import RecipeError, did_you_mean
from ...resources import folder
from .. import checks as V
from ..base import Engine, Launch, Progress, Readme, last_checkpoint, move_up
from ..folder import MERGED, OUTPUT, PRETRAIN_OUTPUT, data_layout, deepspeed_rel, pretrain_layout
from ..hf import (eval_steps, output_dir, parse_trainer_progress, peft_lora, readme_env, render_yaml, starting_point,
                  torchrun_env, trainer_schedule)
from ..venv import Spec

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ...plan import Plan

CONFIG = "sft.yaml"
PRETRAIN_CONFIG = "pretrain.yaml"  # run with `swift pt`
# Model and dataset ids go to the Hugging Face hub (offline: its cache), not to ModelScope's.
HUB = "USE_HF=1"
LAST = "last-checkpoint"  # ms-swift links the newest checkpoint under this name
# training.attention -> ms-swift's attn_impl; None leaves the engine's own choice ("auto").
SWIFT_ATTENTION = {"auto": None, "sdpa": "sdpa", "eager": "eager", "fa2": "flash_attn"}
TORCH_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# The conversation fields and roles ms-swift's loader reads (OpenAI messages or ShareGPT from/value).
SHAREGPT_TAGS = {"role_tag": ("role", "from"), "content_tag": ("content", "value"), "user_tag": ("user", "human"),
                 "assistant_tag": ("assistant", "gpt"), "system_tag": ("system",)}
# What a checkpoint holds only to resume: not copied beside the final adapter.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "rng_state", "training_args.bin")


@cache
def template_names() -> dict[str, str]:
    """model.chat_template -> ms-swift's template name (templates/swift/chat_templates.yaml)."""
    return yaml.safe_load((folder("templates") / "swift" / "chat_templates.yaml").read_text(encoding="utf-8"))


class Swift(Engine):
    name = "swift"
    label = "ms-swift"
    package = "ms-swift"
    config_file = CONFIG
    # DS_BUILD_OPS=0: DeepSpeed's ops are JIT-built when first used, so the install needs no compiler.
    venv = Spec(no_isolation=("deepspeed==0.19.8",), probe="swift")
    run_folder_keys = ("output_dir", "logging_dir", "add_version")
    # SftArguments drops nothing silently but reports leftovers only as "remaining_argv": compare keys first.
    # Parsing runs its __post_init__ (reads the model's config.json, resolves template and model_type).
    deep_check_code = (
        "import dataclasses, json, tempfile\n"
        "from swift.arguments import SftArguments\n"
        "from swift.utils import parse_args\n"
        "known = {f.name for f in dataclasses.fields(SftArguments)}\n"
        "unknown = [k for k in cfg if k not in known]\n"
        "if unknown: raise KeyError('unknown key(s): ' + ', '.join(unknown))\n"
        "cfg = dict(cfg, output_dir=tempfile.mkdtemp(prefix='swift-validate-'))\n"
        "argv = []\n"
        "for k, v in cfg.items():\n"
        "    argv += ['--' + k, *([str(i) for i in v] if isinstance(v, list) else\n"
        "                         [json.dumps(v) if isinstance(v, dict) else str(v)])]\n"
        "args, rest = parse_args(SftArguments, argv)\n"
        "if rest: raise ValueError('remaining_argv: ' + ' '.join(rest))\n"
    )
    descriptions = {
        CONFIG: "the ms-swift training config (`swift sft`)",
        PRETRAIN_CONFIG: f"continued pre-training on the raw chunks, run before training (it writes "
                         f"`{PRETRAIN_OUTPUT}/`, where training starts from)",
    }

    def values(self, plan: Plan, pretrain: bool = False) -> dict[str, dict[str, Any]]:
        """sft.yaml's keys, section by section, as the template prints them (a None value is left out).
        `pretrain`: pretrain.yaml's instead (`swift pt`: loss on all of the text) on the raw chunks, from the base
        model, into output-pretrain/, with no eval set. No system prompt: `swift pt` trains on plain text, its
        generation template refuses one."""
        r = plan.recipe
        m, t, ds = r.method, r.training, r.dataset
        train, val = ([str(p) for p in part] for part in data_layout(plan))
        if pretrain:
            train, val = list(pretrain_layout(plan)), []
        # After continued pre-training SFT goes on from its output (its newest checkpoint).
        model, adapter = starting_point(plan, pretrain, after=f"{PRETRAIN_OUTPUT}/{LAST}")
        # datagen's validation split when there is one, else a slice of train (val_size)
        evaluate = not pretrain and bool(val or t.val_size)
        return {
            "model": {
                "model": model,
                "adapters": [adapter] if adapter else None,
                "model_type": model_type(plan, self.known()["model_types"]),
                "template": template_names().get(r.model.chat_template),
                # the recipe's system prompt, else the chat template's default
                "system": None if pretrain else system_turn(r) or None,
                "enable_thinking": r.model.enable_thinking or None,
                "torch_dtype": TORCH_DTYPE[t.precision],
                "attn_impl": SWIFT_ATTENTION[t.attention],
                "use_liger_kernel": True if t.liger_kernel else None,
                "check_model": False,
            },
            "method": {
                "tuner_type": "full" if m.kind == "full" else "lora",
                **({} if m.kind == "full" else {
                    **peft_lora(plan), "target_modules": "all-linear" if m.target_modules == "all"
                    else list(m.target_modules)}),
                **({} if m.kind != "qlora" else {
                    "quant_method": "bnb", "quant_bits": m.quant_bits,
                    "bnb_4bit_quant_type": m.quant_type if m.quant_bits == 4 else None,
                    "bnb_4bit_use_double_quant": m.double_quant if m.quant_bits == 4 else None}),
                "deepspeed": deepspeed_rel(plan),
            },
            "dataset": {
                "dataset": train,
                "val_dataset": val or None,
                # the empty think block opening each answer (answer_prefix) is context, as in the other engines
                "loss_scale": "ignore_empty_think" if empty_think(r) else None,
                "split_dataset_ratio": 0.0 if val or pretrain else float(t.val_size or 0.0),
                "columns": None if pretrain else columns(ds.format, ds.column_map()),
                "max_length": t.cutoff_len,
                "truncation_strategy": "right",
                "packing": t.packing,
                "dataset_num_proc": 1,
                "dataloader_num_workers": 0,
            },
            "output": {
                "output_dir": output_dir(pretrain),
                "add_version": False,
                "logging_steps": t.logging_steps,
                "save_steps": t.save_steps,
                "report_to": t.report_to,
            },
            "train": {
                "per_device_train_batch_size": t.batch_size,
                "per_device_eval_batch_size": t.batch_size,
                **trainer_schedule(plan, pretrain),
                "gradient_checkpointing": t.gradient_checkpointing,
                "seed": t.seed,
            },
            "eval": {"eval_strategy": "steps", "eval_steps": eval_steps(plan)} if evaluate else {"eval_strategy": "no"},
        }

    def answer_prefix(self, plan: Plan) -> str:
        """A reasoning template with thinking off: LLaMA-Factory and Axolotl put the empty think block after the
        assistant tag as context, and every deployment prompts with it. ms-swift's deepseek_r1 template writes
        nothing there (its qwen3 template adds the block to the answer itself), so the data copies open each answer
        with it and `loss_scale: ignore_empty_think` keeps it out of the loss."""
        return empty_think(plan.recipe)

    def config_files(self, plan: Plan) -> dict[str, str]:
        r = plan.recipe
        files = {CONFIG: render_yaml(plan, "swift/sft.yaml.j2", self.values(plan))}
        if r.method.pretrain is not None:
            files[PRETRAIN_CONFIG] = render_yaml(plan, "swift/sft.yaml.j2", self.values(plan, pretrain=True))
        return files

    def readme(self, plan: Plan) -> Readme:
        r = plan.recipe
        # ms-swift starts torchrun itself when NPROC_PER_NODE is set
        prefix = f"{HUB} {readme_env(plan, force_torchrun=False)}".strip()
        adapter = f"{OUTPUT}/{LAST}"
        steps = [("Train (checkpoints go to `output/`, the newest linked as `output/last-checkpoint`)",
                  [f"{prefix} swift sft {CONFIG}"])]
        if r.method.pretrain is not None:
            steps.insert(0, (f"Continue pre-training on the raw chunks first (into `{PRETRAIN_OUTPUT}/`; training "
                             f"then goes on from `{PRETRAIN_OUTPUT}/{LAST}`)", [f"{prefix} swift pt {PRETRAIN_CONFIG}"]))
        if r.method.kind != "full":
            steps.append(("Merge the adapter into full weights in `merged/`",
                          [f"{HUB} swift export --adapters {adapter} --merge_lora true --output_dir {MERGED}"]))
        return Readme(
            model_key=f"`model` in `{CONFIG}`",
            install=f"ms-swift {self.known()['version']} installed (`swift` on PATH)",
            steps=steps,
            notes=[f"ms-swift does not resume by itself: after an interruption, add `--resume_from_checkpoint "
                   f"{adapter}` to the train command.",
                   "`swift export` refuses an existing `merged/`: remove it to merge again.",
                   "`USE_HF=1` makes ms-swift resolve model ids on the Hugging Face hub (or its offline cache) "
                   "rather than ModelScope's."]
            + (["Several nodes: copy the folder to every node and run the train command there with `NODE_RANK` "
                "set (0 on the master)."] if r.distributed.nnodes > 1 else []),
        )

    def check_recipe(self, plan: Plan) -> None:
        r = plan.recipe
        V.check_overrides(self, r.engine_overrides)
        templates = self.known()["templates"]
        override = r.engine_overrides.get("template")
        if override is not None and override not in templates:
            raise RecipeError(f"ms-swift has no template '{override}'", where="engine_overrides.template",
                              hint=did_you_mean(str(override), templates))
        if override is None and r.model.chat_template not in template_names():
            raise RecipeError(
                f"ms-swift has no template for chat template '{r.model.chat_template}'", where="model.chat_template",
                hint=did_you_mean(r.model.chat_template, template_names())
                or "set engine_overrides.template to an ms-swift template, or add it to "
                   "templates/swift/chat_templates.yaml",
            )

        if r.dataset.format == "sharegpt":
            tags = r.dataset.tag_map()
            for tag, value in tags.items():
                if value not in SHAREGPT_TAGS[tag]:
                    raise RecipeError(f"ms-swift reads no '{value}' as {tag} in conversations",
                                      where=f"dataset.tags.{tag}", hint=f"it reads {' or '.join(SHAREGPT_TAGS[tag])}")

    def check_files(self, plan: Plan, files: dict[str, str]) -> None:
        V.check_rendered_keys(self, self.config(files), CONFIG)
        if PRETRAIN_CONFIG in files:
            V.check_rendered_keys(self, R.parse_back(PRETRAIN_CONFIG, files[PRETRAIN_CONFIG]), PRETRAIN_CONFIG)

    def config(self, files: dict[str, str]) -> dict[str, Any]:
        return R.parse_back(CONFIG, files[CONFIG])

    def chat_templates(self) -> dict[str, list[str]]:
        text = self.known()["template_text"]
        return {name: text.get(swift_name, []) for name, swift_name in template_names().items()}

    def written_template_text(self, plan: Plan) -> list[str]:
        override = plan.recipe.engine_overrides.get("template")
        if override is not None:
            return self.known()["template_text"].get(override, [])
        return super().written_template_text(plan)

    def hand_command(self) -> str:
        return f"{HUB} swift sft {CONFIG}"

    # ms-swift does not resume by itself: the run names the newest complete checkpoint.
    def train_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        argv = ["swift", "sft", CONFIG, *self.run_folder_args(plan, resume_from)]
        return Launch(argv, {"USE_HF": "1", **torchrun_env(plan, force_torchrun=False)}, plan.render_dir)

    def pretrain_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        argv = ["swift", "pt", PRETRAIN_CONFIG, "--output_dir", str(plan.pretrain_dir.resolve())]
        if resume_from is not None:
            argv += ["--resume_from_checkpoint", str(Path(resume_from).resolve())]
        return Launch(argv, {"USE_HF": "1", **torchrun_env(plan, force_torchrun=False)}, plan.render_dir)

    def run_folder_args(self, plan: Plan, resume_from: Path | None = None) -> list[str]:
        args = ["--output_dir", str(plan.train_dir.resolve())]
        if resume_from is not None:
            args += ["--resume_from_checkpoint", str(Path(resume_from).resolve())]
        if plan.recipe.method.pretrain is not None:  # go on from the run's own pre-training output
            args += ["--model" if plan.recipe.method.kind == "full" else "--adapters", str(plan.pretrain_dir.resolve())]
        return args

    def cluster_command(self, plan: Plan) -> str:
        # ms-swift starts torchrun itself when NPROC_PER_NODE or NNODES is set, reading the rendezvous from them.
        return f'{HUB} swift sft {CONFIG} "$@"'

    def after_train(self, train_dir: Path) -> None:
        """The final adapter (or weights) beside the checkpoints, where eval and export look for it, as the
        other engines leave it."""
        last = last_checkpoint(train_dir)
        if last is None:
            return
        for item in last.iterdir():
            if item.is_file() and not item.name.startswith(RESUME_ONLY):
                shutil.copy2(item, Path(train_dir) / item.name)

    # `swift export` skips the merge without a word when its output folder exists: merge into a new subfolder.
    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        argv = ["swift", "export", "--adapters", str(plan.train_dir.resolve()), "--merge_lora", "true",
                "--output_dir", str(Path(out_dir).resolve() / MERGED)]
        return Launch(argv, {"USE_HF": "1"}, plan.render_dir)

    def after_merge(self, out_dir: Path) -> None:
        move_up(Path(out_dir) / MERGED)

    def parse_progress(self, line: str) -> Progress | None:
        return parse_trainer_progress(line)


def model_type(plan: Plan, known_types: list[str]) -> str | None:
    """ms-swift's model_type for a local folder, from its config.json (a local Llama folder is ambiguous to
    ms-swift's own matching); None for a hub id, which ms-swift matches by name."""
    config = Path(plan.model_path) / "config.json"
    if not config.is_file():
        return None
    kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    return kind if kind in known_types else None


def columns(fmt: str, column_map: dict[str, str]) -> dict[str, str] | None:
    """ms-swift's `columns` renaming, from the recipe's columns to the names its loader reads
    (instruction/input/output/system for alpaca, messages for sharegpt); None when nothing needs renaming."""
    standard = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                "messages": "messages"}
    renames = {column: standard[role] for role, column in column_map.items()
               if role in standard and column != standard[role]}
    return renames or None


ENGINE = Swift
