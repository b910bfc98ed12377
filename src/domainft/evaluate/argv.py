"""lm-eval's command lines: the hf or vllm model on base and base + adapter, and a GGUF behind llama_cpp.server; and
the environment lm-eval runs in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import process
from ..errors import UserError
from ..plan import Plan
from ..resources import folder

ENV_ALSO = (
    "LC_", "PYTHONPATH", "VIRTUAL_ENV", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME",
    "DOMAINFT_HOME", "CUDA_HOME", "LD_LIBRARY_PATH", "MKL_NUM_THREADS", "VLLM_WORKER_MULTIPROC_METHOD",
)
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
}


# In a GGUF run's command line until the server is up and its port known; the fingerprint never sees the port.
SERVER_URL = "http://127.0.0.1:PORT/v1"
SERVER_ROOT = "http://127.0.0.1:PORT"  # lm-eval's gguf model appends /v1/completions itself


def model_args(plan: Plan, *, backend: str, base_path: str, adapter: Path | None, trained: Path) -> str:
    """lm-eval --model_args for the base model (adapter None) or base + adapter. `trained` is the adapter folder
    of this evaluation, whose tokenizer (the one the engine trained with) scores both runs."""
    recipe = plan.recipe
    args = {"pretrained": base_path}
    tokenizer_dir = trained if (trained / "tokenizer_config.json").exists() else None
    if recipe.method.kind == "full" and adapter is not None:
        args["pretrained"] = str(adapter)  # full fine-tuning: the "adapter" folder holds whole weights
    elif adapter is not None:
        if backend == "vllm":
            args["lora_local_path"] = str(adapter)  # lm-eval turns on vLLM's LoRA support from this
            args["max_lora_rank"] = str(max(16, recipe.method.rank))
        else:
            args["peft"] = str(adapter)
    if tokenizer_dir is not None:
        # The chat template the engine trained with is saved beside the adapter: score both runs with it.
        args["tokenizer"] = str(tokenizer_dir)
    if recipe.model.trust_remote_code:
        args["trust_remote_code"] = "True"
    args["enable_thinking"] = str(recipe.model.enable_thinking)
    if recipe.model.enable_thinking:
        args["think_end_token"] = "</think>"
    for key, value in args.items():
        if "," in value or "=" in value:
            raise UserError(f"lm-eval cannot take a {key} containing ',' or '='", where=value)
    return ",".join(f"{k}={v}" for k, v in args.items())


def gen_kwargs(plan: Plan) -> str:
    """Plain greedy decoding for scoring, length from eval.max_new_tokens. No repetition penalty on any model:
    transformers applies it over the whole prompt and answer, llama.cpp over the last 64 tokens, so with one the
    GGUF column would measure the sampler, not the quantization (on the demo, at 1.1 the two answer differently;
    at 1.0 they give the same text)."""
    return f"do_sample=False,max_gen_toks={plan.recipe.eval.max_new_tokens}"


def lm_eval_argv(
    plan: Plan, *, label: str, tasks: list[str], limit: int | None, backend: str, base_path: str,
    adapter: Path | None, trained: Path, out_root: Path,
) -> list[str]:
    """lm-eval on the base model (adapter None) or base + adapter, through its hf or vllm model."""
    return _argv(
        plan, model=backend, label=label, tasks=tasks, limit=limit, out_root=out_root,
        model_args=model_args(plan, backend=backend, base_path=base_path, adapter=adapter, trained=trained),
        # vLLM schedules its own batches; the hf backend takes the recipe's.
        batch_size="auto" if backend == "vllm" else str(plan.recipe.eval.batch_size),
        gen_kwargs=gen_kwargs(plan),
    )


def gguf_mc_argv(plan: Plan, *, label: str, tasks: list[str], limit: int | None, out_root: Path) -> list[str]:
    """lm-eval on a GGUF behind llama_cpp.server (which keeps every token's logits, so /v1/completions echoes the
    prompt's log-probabilities), through domainft.evaluate.lm_gguf: lm-eval's `gguf` model, counting the context's
    tokens where lm-eval's own compares character offsets that a chat template's special tokens throw off. The
    chat-templated multiple-choice variants, prompts sent as text."""
    return _argv(plan, model="domainft-gguf", label=label, tasks=tasks, limit=limit, out_root=out_root,
                 model_args=f"base_url={SERVER_ROOT}", batch_size="1", gen_kwargs=None, chat=False,
                 entry="domainft.evaluate.lm_gguf")


def gguf_argv(plan: Plan, *, label: str, tasks: list[str], limit: int | None, out_root: Path,
              url: str = SERVER_URL) -> list[str]:
    """lm-eval on a GGUF behind llama_cpp.server (`url`): lm-eval's `local-chat-completions` model, the same
    tasks, items, system instruction, answer length and greedy decoding as the HF runs. The server applies the
    GGUF's own chat template (the tokenizer's, written in by the converter), as `domainft chat` does."""
    recipe = plan.recipe
    args = {"model": label, "base_url": f"{url}/chat/completions", "tokenizer_backend": "none",
            "num_concurrent": "1", "max_retries": "3", "timeout": "600"}
    if recipe.model.enable_thinking:
        args["think_end_token"] = "</think>"
    # llama_cpp.server's own default repeat_penalty is 1.1: off, as for the HF runs (see gen_kwargs).
    kwargs = {"do_sample": "False", "max_gen_toks": str(recipe.eval.max_new_tokens), "repeat_penalty": "1.0"}
    return _argv(plan, model="local-chat-completions", label=label, tasks=tasks, limit=limit, out_root=out_root,
                 model_args=",".join(f"{k}={v}" for k, v in args.items()), batch_size="1",
                 gen_kwargs=",".join(f"{k}={v}" for k, v in kwargs.items()))


def _argv(plan: Plan, *, model: str, model_args: str, label: str, tasks: list[str], limit: int | None,
          out_root: Path, batch_size: str, gen_kwargs: str | None, chat: bool = True,
          entry: str = "lm_eval") -> list[str]:
    """What every run shares: the tasks of eval_tasks/, the chat template, the recipe's system prompt, per-item
    samples, the seed, and its own output folder. `chat` False: the prompts are chat-templated already. `entry`:
    the module that runs lm-eval's CLI (lm_eval itself, or one that adds a model to it)."""
    recipe = plan.recipe
    argv = [
        sys.executable, "-m", entry, "run",
        "--model", model,
        "--model_args", model_args,
        "--tasks", ",".join(tasks),
        "--include_path", str(folder("eval_tasks")),
        *(["--apply_chat_template"] if chat else []),
        "--log_samples",
        "--output_path", str(out_root / label),
        "--batch_size", batch_size,
        *(["--gen_kwargs", gen_kwargs] if gen_kwargs else []),
        "--seed", str(recipe.training.seed),
    ]
    if recipe.model.system_prompt and chat:
        argv += ["--system_instruction", recipe.model.system_prompt]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def lm_eval_env(work_dir: Path) -> dict[str, str]:
    return {**process.clean_env(work_dir, also=ENV_ALSO), **OFFLINE_ENV}
