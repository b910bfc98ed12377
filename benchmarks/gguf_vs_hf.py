"""Decode speed of the Q4_K_M GGUF (llama-cpp-python) vs the merged HF model (transformers fp32) on CPU.

SmolLM2-135M-Instruct plus a small random LoRA, merged; the same chat prompt; greedy; one run each after a
short warm-up; decode tokens/s excludes the prompt (prefill) in both. Target: GGUF >= 5x HF.

    python benchmarks/gguf_vs_hf.py [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the random-adapter helper the export tests use

PROMPT = [{"role": "system", "content": "You are a coal-mine safety expert."},
          {"role": "user", "content": "List the checks a shift supervisor makes before allowing blasting underground."}]


def hf_decode(model_dir: Path, ids: list[int], n: int, threads: int) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    prompt = torch.tensor([ids])
    kw = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, "min_new_tokens": n, "max_new_tokens": n}
    with torch.inference_mode():
        model.generate(prompt, **{**kw, "min_new_tokens": 4, "max_new_tokens": 4})  # warm-up
        start = time.perf_counter()
        model.generate(prompt, **{**kw, "min_new_tokens": 1, "max_new_tokens": 1})  # prefill + first token
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(prompt, **kw)
        total = time.perf_counter() - start
    return total - prefill, out.shape[1] - len(ids) - 1


def gguf_decode(path: Path, ids: list[int], n: int, threads: int) -> tuple[float, int]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=threads, verbose=False)
    llm.eval(ids[:4])  # warm-up
    llm.reset()
    llm.eval(ids)  # prefill, not timed
    tokens = 0
    start = time.perf_counter()
    for _ in range(n - 1):
        token = llm.sample(temp=0.0, top_k=1)
        llm.eval([token])  # decode one token, ignoring EOS so both sides make the same number of tokens
        tokens += 1
    return time.perf_counter() - start, tokens


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import torch
    from peft import PeftModel
    from peft_helpers import make_random_adapter
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainft.export.gguf import convert_hf_to_gguf, quantize
    from domainft.models.embedded import materialize

    base = materialize("embedded:smollm2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adapter = make_random_adapter(base, tmp / "adapter")
        merged = tmp / "merged"
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                                          str(adapter)).merge_and_unload()
        model.save_pretrained(str(merged))
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        tokenizer.save_pretrained(str(merged))
        f16 = convert_hf_to_gguf(merged, tmp / "m-f16.gguf", log_path=tmp / "log")
        q4 = quantize(f16, tmp / "m-q4_k_m.gguf", "q4_k_m", log_path=tmp / "log")
        ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]

        hf_s, hf_n = hf_decode(merged, ids, args.tokens, args.threads)
        gg_s, gg_n = gguf_decode(q4, ids, args.tokens, args.threads)
    hf_rate, gg_rate = hf_n / hf_s, gg_n / gg_s
    print(f"prompt {len(ids)} tokens, {args.threads} threads, greedy decode")
    print(f"HF merged fp32 (transformers): {hf_n} tokens in {hf_s:.2f} s = {hf_rate:.1f} tok/s")
    print(f"GGUF Q4_K_M (llama.cpp):       {gg_n} tokens in {gg_s:.2f} s = {gg_rate:.1f} tok/s")
    print(f"ratio GGUF/HF: {gg_rate / hf_rate:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
