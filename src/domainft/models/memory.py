"""Peak GPU memory of a recipe's training step and the bytes its weights take, from the model's shape.

Estimates, not measurements: the arithmetic behind "does 7B QLoRA fit in 8 GiB at cutoff 1024?", used by
`domainft validate` (against the GPU it finds) and `benchmarks/memory_estimate.py` (per recipe, with the NF4
constant measured). `benchmarks/train_throughput.py --fit-check` measures on a GPU.

What is counted (bf16 training, SDPA, no sequence parallelism, one GPU):
  weights      quantized linear layers (QLoRA: NF4 + constants) or bf16; embeddings, lm_head, norms in bf16
  lora         trainable LoRA weights in fp32 plus their gradients and two Adam moments: 16 B per parameter
  activations  gradient checkpointing on: each layer's bf16 input, plus one layer recomputed in full during
               backward; off: every layer in full. LoRA dropout > 0 keeps a dropped copy of each adapter input.
  dequant      QLoRA: the largest linear weight dequantized to bf16 while it is used
  logits       batch x cutoff x vocab: bf16 logits, the fp32 copy the loss takes, and both gradients
               (12 B each); Liger's fused linear cross-entropy never builds them (a 1/16 chunk is left)
  runtime      CUDA context and allocator slack, as nvidia-smi counts them: 0.8 GiB (an assumption)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..recipe import Recipe

# Published config.json values (Qwen2 architecture). DeepSeek-R1-Distill-Qwen-7B, the ISO recipe's base, has the
# Qwen2.5-7B shape (it is distilled into Qwen2.5-Math-7B) with rope_theta 1e4: same speed and memory.
MODEL_CONFIGS: dict[str, dict] = {
    "qwen2.5-7b": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1000000.0, "tie_word_embeddings": False,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
    },
    "r1-1.5b": {  # DeepSeek-R1-Distill-Qwen-1.5B
        "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
        "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
    },
    "tiny-qwen2": {  # --smoke: the same architecture, CPU-sized
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 49152, "rope_theta": 10000.0, "tie_word_embeddings": True,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
    },
}

GIB = 2**30
BF16 = 2
RUNTIME_GIB = 0.8
NF4_FORMULA = 0.5 + 1 / 64 + 4 / (64 * 256)  # packed 4-bit + uint8 absmax per 64 + fp32 second-level per 256 blocks
LIGER_CHUNK = 1 / 16  # fraction of the logits Liger's fused cross-entropy holds at once (upper bound)
# model.base -> shape, for the shipped recipes (the 7B R1 distill has the Qwen2.5-7B shape)
SHAPES = {"DeepSeek-R1-Distill-Qwen-7B": "qwen2.5-7b", "DeepSeek-R1-Distill-Qwen-1.5B": "r1-1.5b"}


def linear_shapes(c: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each projection in one decoder layer (Qwen2/Llama with grouped-query attention)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_counts(c: dict) -> dict[str, int]:
    """Exact parameter counts of a Qwen2 model by kind (q/k/v carry biases in Qwen2)."""
    h, n, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    shapes = linear_shapes(c)
    linear = n * sum(a * b for a, b in shapes.values())
    bias = n * (shapes["q_proj"][1] + shapes["k_proj"][1] + shapes["v_proj"][1])
    norms = n * 2 * h + h
    embed = vocab * h
    head = 0 if c.get("tie_word_embeddings") else vocab * h
    return {"linear": linear, "other": bias + norms + embed + head, "embed_head": embed + head,
            "total": linear + bias + norms + embed + head}


def lora_params(c: dict, rank: int, targets: list[str] | str) -> int:
    names = list(linear_shapes(c)) if targets == "all" else list(targets)
    return c["num_hidden_layers"] * sum(rank * (a + b) for k, (a, b) in linear_shapes(c).items() if k in names)


def layer_activation_elems(c: dict, lora_dropout: float, targets: list[str] | str) -> int:
    """bf16 elements one decoder layer keeps for backward, per token (SDPA keeps no attention matrix)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = linear_shapes(c)["k_proj"][1]
    # norm in/out, q, k, v, rotated q and k, attention out, residual, norm2 in/out, gate, up, act(gate), product
    elems = 2 * h + h + 2 * kv + (h + kv) + h + h + 2 * h + 2 * i + i + i
    if lora_dropout > 0:  # each adapter keeps its own dropped input
        names = list(linear_shapes(c)) if targets == "all" else list(targets)
        elems += sum(linear_shapes(c)[k][0] for k in names)
    return elems


def estimate(recipe: Recipe, c: dict, nf4_bytes: float = NF4_FORMULA) -> dict[str, float]:
    """GiB per part of the peak, and the total."""
    m, t = recipe.method, recipe.training
    counts = param_counts(c)
    tokens = t.batch_size * t.cutoff_len
    qlora = m.kind == "qlora" and m.quant_bits == 4
    if m.kind == "full":
        weights = counts["total"] * (BF16 + 16)  # bf16 weights; fp32 master, grads and Adam: an upper bound
        trainable = 0
    else:
        weights = counts["linear"] * (nf4_bytes if qlora else BF16) + counts["other"] * BF16
        trainable = lora_params(c, m.rank, m.target_modules) * 16
    per_layer = layer_activation_elems(c, m.dropout if m.kind != "full" else 0.0, m.target_modules) * BF16 * tokens
    if t.gradient_checkpointing:
        activations = c["num_hidden_layers"] * tokens * c["hidden_size"] * BF16 + per_layer
    else:
        activations = c["num_hidden_layers"] * per_layer
    dequant = max(a * b for a, b in linear_shapes(c).values()) * BF16 if qlora else 0
    logits = tokens * c["vocab_size"] * 12 * (LIGER_CHUNK if t.liger_kernel else 1)
    parts = {"weights": weights, "lora+adam": trainable, "activations": activations, "dequant": dequant,
             "logits": logits}
    out = {k: v / GIB for k, v in parts.items()}
    out["runtime"] = RUNTIME_GIB
    out["total"] = sum(out.values())
    return out


def shape_of(base: str) -> str | None:
    """The published shape a model id names (None: unknown; a pulled model's own config.json says it)."""
    return next((shape for key, shape in SHAPES.items() if key in base), None)


# Bits per weight of each GGUF type, from llama.cpp's own size table for Llama-3-8B (`llama-quantize --help`):
# the whole file, token embeddings and output layer included. Estimates for other models.
GGUF_BITS = {"f16": 16.0, "bf16": 16.0, "q8_0": 8.51, "q6_k": 6.57, "q5_k_m": 5.70, "q4_k_m": 4.90, "q4_1": 5.11,
             "q4_0": 4.64}
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def config_params(c: dict) -> int | None:
    """Parameters of a decoder from its config.json (the Qwen2/Llama arithmetic above), None when the config lacks
    the usual keys (another architecture)."""
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    if not all(isinstance(c.get(k), int) for k in keys):
        return None
    return param_counts({**c, "num_key_value_heads": c.get("num_key_value_heads") or c["num_attention_heads"]})["total"]


def gguf_bytes(params: int, quant: str) -> float:
    return params * GGUF_BITS[quant] / 8
