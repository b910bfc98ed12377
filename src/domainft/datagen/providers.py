"""Teachers behind one interface: `zhipuai` (GLM-4), `openai` (any OpenAI-compatible server), `extractive`.

A provider sends one chat (`chat`: messages in, JSON-constrained reply out), which datagen (`complete`: one chunk
into one reply) and the LLM judge both use. Faults worth another try (429, 5xx, timeouts, dropped
connections) raise `Transient`; faults no retry can fix (bad key, unknown model) raise `TeacherError`.
Keys come from the environment only and are never logged.
"""

from __future__ import annotations

import asyncio
import os
import re
from abc import ABC
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import TeacherError
from ..extract import Chunk
from ..extract.chunks import split_span
from ..extract.structure import _CLAUSE, _CN_ARTICLE, detect_headings, is_title_like
from ..recipe import TeacherConfig
from .prompts import PromptSpec, is_cjk


class Transient(Exception):
    """Worth retrying. `kind` is counted (http_429, http_500, timeout, connection); `retry_after` in s."""

    def __init__(self, kind: str, retry_after: float | None = None):
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class Reply:
    text: str | None = None  # raw model output, parsed and checked by the runner
    pairs: list[dict[str, str]] | None = None  # already structured (extractive)
    tokens: int | None = None


class Provider(ABC):
    name: str
    where: str = "datagen.provider"

    async def check(self) -> None:
        """Fail fast (TeacherError) when the teacher cannot work at all: no key, nothing listening."""

    async def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
                   max_tokens: int) -> Reply:
        """One chat completion; the reply constrained to JSON (to `schema` where the server can)."""
        raise NotImplementedError(f"the {self.name} provider has no chat")

    async def complete(self, chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None) -> Reply:
        return await self.chat(_messages(chunk, spec, n_pairs, min_pairs), schema=spec.request_schema(n_pairs),
                               temperature=spec.temperature, max_tokens=spec.max_tokens)

    async def probe(self, chunk: Chunk, spec: PromptSpec, n_probe: int, questions: list[str]) -> Reply:
        """The knowledge probe's questions on the chunk, worded apart from its training `questions`."""
        return await self.chat(_messages(chunk, spec, n_probe, probe_of=questions), schema=spec.request_schema(n_probe),
                               temperature=spec.temperature, max_tokens=spec.max_tokens)

    async def aclose(self) -> None:
        pass


def _messages(chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None, *,
              probe_of: list[str] | None = None) -> list[dict[str, str]]:
    return [{"role": "system", "content": spec.system.strip()},
            {"role": "user", "content": spec.render(chunk, n_pairs, min_pairs, probe_of=probe_of)}]


def _status_fault(status: int, detail: str, where: str, headers: Any = None) -> Exception:
    if status == 429 or status >= 500 or status == 408:
        retry_after = None
        if headers is not None:
            try:
                retry_after = float(headers.get("retry-after"))
            except (TypeError, ValueError):
                pass
        return Transient(f"http_{status}", retry_after)
    if status in (401, 403):
        return TeacherError(f"teacher refused the key (HTTP {status}): {detail[:120]}", where=where)
    return TeacherError(f"teacher answered HTTP {status}: {detail[:160]}", where=where)


# ------------------------------------------------------------------ OpenAI-compatible


class OpenAIProvider(Provider):
    """Any OpenAI-compatible /chat/completions: vLLM, Ollama, `python -m llama_cpp.server`, hosted APIs."""

    name = "openai"

    def __init__(self, cfg: TeacherConfig, section: str = "datagen"):
        self.where = f"{section}.base_url"
        self.url = (cfg.base_url or "").rstrip("/")
        self.model = cfg.model
        self.timeout_s = cfg.timeout_s
        headers = {}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise TeacherError(f"environment variable {cfg.api_key_env} is not set", where=f"{section}.api_key_env")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s)),
            headers=headers,
            limits=httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency),
        )
        # Constrained JSON: llama_cpp.server takes json_object + schema (it rejects json_schema).
        self.json_mode = True

    async def check(self) -> None:
        try:
            await self.client.get(f"{self.url}/models", timeout=10)
        except httpx.ConnectError:
            raise TeacherError(f"cannot reach the teacher at {self.url} (connection refused)", where=self.where) from None
        except httpx.HTTPError:
            pass  # some servers have no /models, or answer it slowly: the real calls will tell

    async def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
                   max_tokens: int) -> Reply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "max_tokens": max_tokens}
        if self.json_mode:
            body["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
        try:
            # httpx's timeout bounds each read, not the reply: a server trickling bytes (slow loris) would hold
            # a worker for as long as it liked. This deadline covers the whole call.
            response = await asyncio.wait_for(self.client.post(f"{self.url}/chat/completions", json=body),
                                              timeout=self.timeout_s)
        except (httpx.TimeoutException, TimeoutError):  # asyncio.wait_for raises the builtin
            raise Transient("timeout") from None
        except httpx.ConnectError:
            raise Transient("refused") from None  # nobody listening: the runner decides when that means gone
        except httpx.TransportError:
            raise Transient("connection") from None  # reset or torn mid-reply: a fault of this request
        if response.status_code == 400 and self.json_mode and "response_format" in response.text:
            self.json_mode = False  # this server has no constrained output: parse and repair instead
            raise Transient("no_json_mode", retry_after=0)
        if response.status_code != 200:
            raise _status_fault(response.status_code, response.text, self.where, response.headers)
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Transient("bad_envelope") from None  # a torn or non-JSON HTTP body: ask again
        usage = data.get("usage") or {}
        return Reply(text=text or "", tokens=usage.get("total_tokens"))

    async def aclose(self) -> None:
        await self.client.aclose()


# ------------------------------------------------------------------ Zhipu GLM


class ZhipuProvider(Provider):
    """GLM-4 family through the zhipuai SDK (its own retries off: ours back off with jitter)."""

    name = "zhipuai"
    ENV = "ZHIPUAI_API_KEY"

    def __init__(self, cfg: TeacherConfig, section: str = "datagen"):
        self.where = f"{section}.model"
        env = cfg.api_key_env or self.ENV
        key = os.environ.get(env)
        if not key:
            raise TeacherError(f"environment variable {env} is not set", where=f"{section}.api_key_env")
        from zhipuai import ZhipuAI

        kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0, "timeout": cfg.timeout_s}
        if cfg.base_url:
            kwargs["base_url"] = cfg.base_url
        self.client = ZhipuAI(**kwargs)
        self.model = cfg.model

    async def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
                   max_tokens: int) -> Reply:
        import zhipuai

        def call() -> Any:  # GLM takes json_object without a schema: the prompt carries the shape
            return self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=max(temperature, 0.01),
                max_tokens=max_tokens, response_format={"type": "json_object"},
            )

        try:
            response = await asyncio.to_thread(call)
        except zhipuai.APITimeoutError:
            raise Transient("timeout") from None
        except zhipuai.APIConnectionError as exc:
            import httpx

            raise Transient("refused" if isinstance(exc.__cause__, httpx.ConnectError) else "connection") from None
        except zhipuai.APIStatusError as exc:
            raise _status_fault(exc.status_code, str(exc), self.where, exc.response.headers) from None
        usage = getattr(response, "usage", None)
        return Reply(text=response.choices[0].message.content or "", tokens=getattr(usage, "total_tokens", None))


# ------------------------------------------------------------------ extractive (offline)


class ExtractiveProvider(Provider):
    """Offline and deterministic: one question per article (第十条), numbered clause or section,
    answered with that unit's own text. No model; useful for smoke runs and as a floor."""

    name = "extractive"

    async def complete(self, chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None) -> Reply:
        return Reply(pairs=extractive_pairs(chunk, spec, n_pairs))

    async def probe(self, chunk: Chunk, spec: PromptSpec, n_probe: int, questions: list[str]) -> Reply:
        return Reply(pairs=extractive_pairs(chunk, spec, n_probe, probe=True))


def _units(text: str) -> list[tuple[str, str, str, str]]:
    """(kind, label, name, body) for each article or numbered clause that starts in the text."""
    lines = text.split("\n")
    heads = detect_headings(lines)
    starts = []
    for i, (line, head) in enumerate(zip(lines, heads)):
        if m := _CN_ARTICLE.match(line):
            starts.append((i, "article", m.group(1), "", line[m.end() :]))
        elif head is not None and (m := _CLAUSE.match(line.strip())):
            number, rest = m.group(1), m.group(2).strip()
            if "." not in number and not is_title_like(line):
                continue  # "1 …" that is not a title is more often a list item than clause 1
            if is_title_like(line):
                starts.append((i, "clause", number, rest, ""))
            else:  # "5.2.1 text…": no title, the text runs on
                starts.append((i, "clause", number, "", rest))
    units = []
    for k, (i, kind, label, name, first) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        body = "\n".join([first, *lines[i + 1 : stop]]).strip()
        if body:
            units.append((kind, label, name, body))
    return units


def _fit(text: str, limit: int) -> str:
    """Cut to at most `limit` chars at a sentence end (the first span split_span would make)."""
    if len(text) <= limit:
        return text
    lo, hi = split_span(text, 0, len(text), limit, 0)[0]
    return text[lo:hi]


# Words an English clause's opening is not cut after: it would read as cut mid-phrase ("The base of an").
_DANGLING = frozenset("a an the of to in on at for by with and or from as into than least that which is are was be been "
                      "shall should may must can will not".split())


def clause_lead(body: str, cjk_chars: int = 16, words_chars: int = 40) -> str:
    """An untitled clause's opening, to name it in a question: up to `cjk_chars` characters of Chinese text, or
    whole words of other text up to `words_chars` characters, never ending on an article, preposition or auxiliary
    (never cut mid-word)."""
    first = (body.strip().split("\n") or [""])[0]
    if is_cjk(first):
        return _fit(first, cjk_chars).rstrip("，,。.；;：:")
    words: list[str] = []
    for word in first.split():
        if words and len(" ".join([*words, word])) > words_chars:
            break
        words.append(word)
    while len(words) > 1 and words[-1].lower().strip(",.;:") in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(",.;:")


def extractive_pairs(chunk: Chunk, spec: PromptSpec, n_pairs: int, *, probe: bool = False) -> list[dict[str, str]]:
    """One pair per article or clause of the chunk (the whole chunk for a section without them). With `probe`,
    the knowledge probe's: the same units, asked with the probe templates."""
    title = chunk.title or chunk.file
    templates = spec.extractive.probe if probe else spec.extractive
    if templates is None:
        return []
    pairs = []
    for kind, label, name, body in _units(chunk.text):
        if kind == "article":
            question = templates.article.format(title=title, label=label)
        elif name:
            question = templates.clause.format(title=title, label=label, name=name)
        else:
            question = templates.clause.format(title=title, label=label, name=clause_lead(body))
        pairs.append({"question": question, "answer": _fit(body, spec.answer_max_chars)})
    if not pairs:
        name = re.sub(r"\s+", " ", chunk.heading_path[-1]) if chunk.heading_path else title
        pairs.append({"question": templates.section.format(title=title, name=name),
                      "answer": _fit(chunk.text, spec.answer_max_chars)})
    return [p for p in pairs if len(p["question"]) <= spec.question_max_chars][:n_pairs]


def make_provider(cfg: TeacherConfig, section: str = "datagen") -> Provider:
    """The provider for a teacher or judge section; `section` (a dotted recipe key) is where its errors point."""
    if cfg.provider == "openai":
        return OpenAIProvider(cfg, section)
    if cfg.provider == "zhipuai":
        return ZhipuProvider(cfg, section)
    return ExtractiveProvider()
