"""A small random LoRA adapter on a real base model: what training would leave in train_dir, in seconds."""

from __future__ import annotations

from pathlib import Path


def make_random_adapter(base: Path, out: Path, *, seed: int = 0, scale: float = 2e-3) -> Path:
    """PEFT LoRA (r=8 on q/v) with small random B, so merging changes the weights without wrecking the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, scale)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    return out
