"""The seed recipes match the seed systems value by value (../shared/notes/seeds.md).

Each row: the recipe key, the value the recipe must hold, and the seeds.md line it comes from. Values are checked in
the validated recipe and, where an engine file carries them, in what each engine renders from it (the engine's own
key); the datagen rows in the resolved prompt file; the prompting rows in the prompt Ollama builds from the rendered
Modelfile. When ../shared/notes/seeds.md is present, every quoted line is checked to be in it.
Where the project deliberately differs from a seed, README.md's "The seed systems" section says so and why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ollama_prompt import ollama_prompt

from domainft.datagen.prompts import load_prompts
from domainft.engines import get_engine
from domainft.export import render_modelfile
from domainft.plan import make_plan
from domainft.recipe import load_recipe
from domainft.render import render

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO.parent / "shared" / "notes" / "seeds.md"

# recipe key -> the key each engine renders it as (in train.yaml / axolotl.yml / sft.yaml)
RENDERED = {
    "llamafactory": {"training.batch_size": "per_device_train_batch_size", "training.grad_accum": "gradient_accumulation_steps",
                     "training.learning_rate": "learning_rate", "training.weight_decay": "weight_decay",
                     "training.warmup_ratio": "warmup_ratio", "training.scheduler": "lr_scheduler_type",
                     "training.epochs": "num_train_epochs", "training.eval_steps": "eval_steps",
                     "training.cutoff_len": "cutoff_len", "method.rank": "lora_rank", "method.alpha": "lora_alpha",
                     "method.dropout": "lora_dropout", "method.quant_bits": "quantization_bit",
                     "method.quant_type": "quantization_type"},
    "axolotl": {"training.batch_size": "micro_batch_size", "training.grad_accum": "gradient_accumulation_steps",
                "training.learning_rate": "learning_rate", "training.weight_decay": "weight_decay",
                "training.warmup_ratio": "warmup_ratio", "training.scheduler": "lr_scheduler",
                "training.epochs": "num_epochs", "training.eval_steps": "eval_steps",
                "training.cutoff_len": "sequence_len", "method.rank": "lora_r", "method.alpha": "lora_alpha",
                "method.dropout": "lora_dropout", "method.target_modules": "lora_target_modules"},
}
RENDERED_AS = {"method.quant_bits": {4: 4}, "training.epochs": {3: 3.0, 6: 6.0}}

ISO_BASE = "Base: DeepSeek-R1-Distill-Qwen-7B"
ISO_TRAIN = "Training (final): QLoRA 4-bit + bf16, LoRA r 16 / alpha 32, lr 1e-5, per-device batch 1, grad-accum 4"
ISO_DATA = ("improved generation: temperature 0.5, 5 pairs per section, sections containing \"shall\"/\"should\" "
            "preferred, answers carry the rule number and a citation")
ISO_SCHEDULE = "weight decay 0.01, warmup ratio 0.01, cosine, epochs 1–3 (script default 3"
ISO = [
    ("model.base", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", ISO_BASE),
    ("method.kind", "qlora", ISO_TRAIN),
    ("method.quant_bits", 4, ISO_TRAIN),
    ("training.precision", "bf16", ISO_TRAIN),
    ("method.rank", 16, ISO_TRAIN),
    ("method.alpha", 32, ISO_TRAIN),
    ("training.learning_rate", 1.0e-5, ISO_TRAIN),
    ("training.batch_size", 1, ISO_TRAIN),
    ("training.grad_accum", 4, ISO_TRAIN),
    ("training.weight_decay", 0.01, ISO_SCHEDULE),
    ("training.warmup_ratio", 0.01, ISO_SCHEDULE),
    ("training.scheduler", "cosine", ISO_SCHEDULE),
    ("training.epochs", 3, ISO_SCHEDULE),
    ("datagen.split.val", 0.1, "Validation: 1–10 % held out"),
    ("training.eval_steps", 0.1, "evaluate every 0.1–0.5 of the steps (a fraction, not a count)"),
    ("model.system_prompt_in", "user", "Prompting: no system prompt; every instruction, the expert role included, goes "
                                       "in the user turn."),
    ("datagen.temperature", 0.5, ISO_DATA),
    ("datagen.pairs_per_chunk", 5, ISO_DATA),
    ("datagen.max_chunks", 250, "a cap on sections per run (150 / 200 / 250 in successive runs)"),
    ("sampling.temperature", 0.6, "Inference: temperature 0.6, top-p 0.95, repetition penalty 1.1"),
    ("sampling.top_p", 0.95, "Inference: temperature 0.6, top-p 0.95, repetition penalty 1.1"),
    ("sampling.repetition_penalty", 1.1, "Inference: temperature 0.6, top-p 0.95, repetition penalty 1.1"),
]
ISO_CONTEXT = ("training.cutoff_len", 2048, "context 2048–4096")
# The 8 GiB variant keeps what its memory estimate measured (BENCHMARKS.md): the seed's batch, a 1024 cutoff.
ISO_8GIB_CONTEXT = ("training.cutoff_len", 1024, "≥ 8 GB GPU for 4-bit")

COAL_TRAIN = ("Training: QLoRA, 4-bit nf4, compute dtype bf16, LoRA r 64 / alpha 16 / dropout 0.1, targets q,k,v,o,gate,up,\n"
              "  down; 6 epochs, batch 4, grad-accum 4, lr 2e-4, weight decay 0.01, warmup ratio 0.1, cosine.")
COAL_DATA = "Data: a GLM-4 teacher through the zhipuai SDK; per **document** 10–20 pairs"
COAL = [
    ("model.base", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "Base: DeepSeek-R1-Distill-Qwen-1.5B."),
    ("datagen.provider", "zhipuai", COAL_DATA),
    ("datagen.model", "glm-4-flash", COAL_DATA),
    ("datagen.prompts", "coalqa", "The teacher prompt's rules (in substance)"),
    ("datagen.pairs_per_document", [10, 20], COAL_DATA),
    ("method.kind", "qlora", COAL_TRAIN),
    ("method.quant_bits", 4, COAL_TRAIN),
    ("method.quant_type", "nf4", COAL_TRAIN),
    ("training.precision", "bf16", COAL_TRAIN),
    ("method.rank", 64, COAL_TRAIN),
    ("method.alpha", 16, COAL_TRAIN),
    ("method.dropout", 0.1, COAL_TRAIN),
    ("method.target_modules", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], COAL_TRAIN),
    ("training.epochs", 6, COAL_TRAIN),
    ("training.batch_size", 4, COAL_TRAIN),
    ("training.grad_accum", 4, COAL_TRAIN),
    ("training.learning_rate", 2.0e-4, COAL_TRAIN),
    ("training.weight_decay", 0.01, COAL_TRAIN),
    ("training.warmup_ratio", 0.1, COAL_TRAIN),
    ("training.scheduler", "cosine", COAL_TRAIN),
    ("model.system_prompt_in", "system", "plain text \"system: … / user: … / response: …\" with a fixed coal-safety "
                                         "expert system sentence."),
]
# The coal prompt file (datagen/coalqa.yaml): key, value, seeds.md line.
COAL_PROMPT = [
    ("question_max_chars", 120, "question ≤ 80–120 characters"),
    ("answer_max_chars", 1024, "answer 512–1024 characters (the prompt says \"fewer than N characters\")"),
    ("reply.list_key", None, "reply is a bare JSON array of\n  `{\"input\": question, \"output\": answer}`, no markdown fence"),
    ("reply.question", "input", "reply is a bare JSON array of\n  `{\"input\": question, \"output\": answer}`, no markdown fence"),
    ("reply.answer", "output", "reply is a bare JSON array of\n  `{\"input\": question, \"output\": answer}`, no markdown fence"),
]
# Each rule of the seed's teacher prompt, and words of the rendered instruction that state it.
COAL_RULES = [
    (["从头到尾完整读一遍"], "read the whole text"),
    (["有价值、忠于原文", "答案要准确、专业"], "questions valuable and faithful to it,\n  answers accurate and professional"),
    (["8 到 15 组问答", "互不重复"], "10–20 distinct pairs"),
    (["换一种说法再问", "意思必须保持不变"], "vary wording of a question while keeping its meaning"),
    (["有一定难度", "占位符"], "a question must be a real, challenging question, not a placeholder"),
    (["不能只说“是”“对”“同意”", "推脱"], "an answer must actually answer,\n  not merely agree or refuse"),
    (["体会提问的人真正想了解什么", "不得编造"], "where information is missing infer the user's intent without "
                                               "inventing facts"),
    (["只输出一个 JSON 数组", "不要用 ``` 代码块", "正确转义"], "output strictly valid, correctly escaped JSON only"),
    (["冻结法", "冻结壁"], "one worked example pair about shaft-sinking by the\n  freezing method"),
    (["问题少于 120 个字", "答案少于 1024 个字"], "the prompt says \"fewer than N characters\""),
]


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _rendered(recipe) -> tuple[str, dict]:
    engine = get_engine(recipe.engine)
    files = render(make_plan(recipe, run_dir=Path("/nonexistent/run")))
    return engine.name, yaml.safe_load(files[engine.config_file])


def _check(recipe, rows) -> None:
    engine, config = _rendered(recipe)
    for key, expected, line in rows:
        value = _get(recipe, key)
        value = value.model_dump() if hasattr(value, "model_dump") else value
        assert value == expected, f"{recipe.name}: {key} is {value!r}, the seed says {line!r}"
        rendered_key = RENDERED.get(engine, {}).get(key)
        if rendered_key is not None:
            want = RENDERED_AS.get(key, {}).get(expected, expected) if not isinstance(expected, list) else expected
            assert config[rendered_key] == want, f"{recipe.name}: {engine} renders {rendered_key}: {config[rendered_key]!r}"


def _in_seeds(line: str) -> None:
    if SEEDS.exists():
        squash = lambda text: re.sub(r"\s+", " ", text)  # noqa: E731 - the quotes join wrapped lines
        assert squash(line) in squash(SEEDS.read_text(encoding="utf-8")), f"not in seeds.md: {line!r}"


@pytest.mark.parametrize("name", ["iso-r1-qwen7b", "iso-r1-qwen7b-axolotl", "iso-r1-qwen7b-qlora-8gib"])
def test_iso_seed_recipe(name):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    rows = [*ISO, ISO_8GIB_CONTEXT if name.endswith("8gib") else ISO_CONTEXT]
    _check(recipe, rows)
    spec = load_prompts(recipe.datagen.prompts)
    assert spec.prefer == ["shall", "should"], ISO_DATA
    assert "cite the rule" in spec.instruction and "names the number of the" in spec.instruction, ISO_DATA
    assert recipe.export.quantizations[-1] == "q4_0", "Deployment: merge LoRA, llama.cpp → GGUF (Q4_0 named)"
    # No system turn: the expert role and instructions open the user turn, in the Modelfile as in training.
    prompt = ollama_prompt(render_modelfile(recipe, "m.gguf"), [{"role": "user", "content": "What does shall mean?"}])
    assert prompt == ("<｜User｜>" + recipe.model.system_prompt + "\n\nWhat does shall mean?<｜Assistant｜>"
                      "<think>\n\n</think>\n\n")
    for line in [*(r[2] for r in rows), ISO_DATA, "no system prompt"]:
        _in_seeds(line)


@pytest.mark.parametrize("name", ["coal-r1-qwen1.5b", "coal-r1-qwen1.5b-axolotl"])
def test_coal_seed_recipe(name):
    from domainft.chat_formats import EMPTY_THINK

    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    _check(recipe, COAL)
    spec = load_prompts(recipe.datagen.prompts)
    for key, expected, line in COAL_PROMPT:
        assert _get(spec, key) == expected, f"datagen/{spec.name}.yaml: {key}, the seed says {line!r}"
    from domainft.extract import Chunk

    instruction = spec.render(Chunk.make("f.txt", ["第一章"], 0, "正文", title="煤矿安全规程"), 15, 8)
    for phrases, rule in COAL_RULES:
        for phrase in phrases:
            assert phrase in instruction, f"datagen/{spec.name}.yaml does not state the seed's rule {rule!r}"
    # cutoff_len fits the system prompt, a question and an answer of the seed's longest at a token per character
    # (Qwen's tokenizer takes about 0.7), and the turn markers.
    longest = len(recipe.model.system_prompt) + spec.question_max_chars + spec.answer_max_chars + len(EMPTY_THINK) + 8
    assert longest <= recipe.training.cutoff_len <= 2 * longest
    for line in [*(r[2] for r in COAL), *(r[2] for r in COAL_PROMPT), *(r[1] for r in COAL_RULES)]:
        _in_seeds(line)
