"""LLMs behind one interface: `zhipuai` (GLM-4), `openai` (any OpenAI-compatible server).

A provider sends one chat (`chat`: messages in, JSON-constrained reply out), which datagen's teacher (one chunk
into one reply, datagen/teacher.py) and the LLM judge both use. Faults worth another try (429, 5xx, timeouts,
dropped connections) raise `Transient`; faults no retry can fix (bad key, unknown model) raise `TeacherError`.
Keys come from the environment only and are never logged.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import TeacherError
from ..recipe import TeacherConfig


class Transient(Exception):
    """Worth retrying. `kind` is counted (http_429, http_500, timeout, connection); `retry_after` in s."""

    def __init__(self, kind: str, retry_after: float | None = None):
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class Reply:
    text: str | None = None  # raw model output, parsed and checked by the caller (domainft.llm.replies)
    tokens: int | None = None


class Provider(ABC):
    name: str
    where: str  # the recipe key its errors point at
    url: str | None = None  # the server, where there is one to name (else the model names the target)

    async def check(self) -> None:
        """Fail fast (TeacherError) when the LLM cannot work at all: no key, nothing listening."""

    async def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None, temperature: float,
                   max_tokens: int) -> Reply:
        """One chat completion; the reply constrained to JSON (to `schema` where the server can)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


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

    def __init__(self, cfg: TeacherConfig, section: str):
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

    def __init__(self, cfg: TeacherConfig, section: str):
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


def make_provider(cfg: TeacherConfig, section: str) -> Provider:
    """The provider for a teacher or judge section; `section` (a dotted recipe key) is where its errors point."""
    if cfg.provider == "openai":
        return OpenAIProvider(cfg, section)
    if cfg.provider == "zhipuai":
        return ZhipuProvider(cfg, section)
    raise ValueError(f"provider '{cfg.provider}' is no LLM")
