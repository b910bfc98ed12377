"""lm-eval's `gguf` model, made to score chat-templated prompts: run as `python -m domainft.evaluate.lm_gguf run
--model domainft-gguf --model_args base_url=http://127.0.0.1:PORT ...` (lm-eval's own CLI, with this model added).

lm-eval's `gguf` model POSTs context + continuation to llama_cpp.server's /v1/completions with `echo` and
`logprobs`, then finds where the continuation starts by comparing each token's `text_offset` with the context's
length in characters. llama-cpp-python builds those offsets by detokenizing without special tokens, so under a
chat template (<|im_start|>, <|im_end|>) every offset falls short of the context and lm-eval's loop runs off the
end. This model counts tokens instead: the context alone, echoed, gives how many of the echoed tokens are the
context's; the continuation's log-probability is the sum over the tokens after them (the one generated token
left out, as lm-eval does).
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.gguf import GGUFLM
from tqdm import tqdm


@register_model("domainft-gguf")
class ChatTemplatedGGUF(GGUFLM):
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        context_tokens: dict[str, int] = {}
        results = []
        for context, continuation in tqdm([req.args for req in requests], disable=disable_tqdm):
            if context not in context_tokens:
                # The context echoed alone: its tokens, then the one generated token (as lm-eval's HF model
                # takes the continuation to be what the whole adds to the context's own tokens).
                echoed = self._logprobs(self._echo(context)["choices"][0], context)
                context_tokens[context] = len(echoed["tokens"]) - 1
            n = context_tokens[context]
            lp = self._logprobs(self.gguf_completion(context=context, continuation=continuation)["choices"][0],
                                context)
            tokens, logprobs, top = lp["tokens"][n:-1], lp["token_logprobs"][n:-1], lp["top_logprobs"][n:-1]
            greedy = all(t and max(t, key=t.get) == token for t, token in zip(top, tokens))
            results.append((float(sum(logprobs)), greedy))
        return results

    def _echo(self, prompt: str) -> dict:
        import requests

        body = {"prompt": prompt, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0.0}
        response = requests.post(f"{self.base_url}/v1/completions", json=body, timeout=600)
        response.raise_for_status()
        return response.json()

    @staticmethod
    def _logprobs(choice: dict, context: str) -> dict:
        lp = choice.get("logprobs") or {}
        if not lp.get("tokens") or not lp.get("token_logprobs"):
            raise RuntimeError(f"the server returned no prompt log-probabilities for {context[:40]!r}: serve the "
                               "GGUF with logits_all (llama_cpp.server's default)")
        return lp


if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
