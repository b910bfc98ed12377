"""What an LLM sends back: one JSON value, parsed after the safe repairs only (code fences, prose around the JSON,
trailing commas). A reply that cannot be used raises `BadReply`, whose reason is counted and the call retried;
datagen's pair checks and the judge's verdicts read the parsed value."""

from __future__ import annotations

import json
import re
from typing import Any


class BadReply(Exception):
    """The whole reply is unusable (no JSON, wrong shape); `reason` is counted and the call retried."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def parse_json_reply(text: str) -> Any:
    """json.loads after the safe repairs only: strip fences and surrounding prose, drop trailing commas."""
    text = text.strip()
    if m := _FENCE.search(text):
        text = m.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise BadReply("invalid_json")
    start = min(starts)
    end = text.rfind("}" if text[start] == "{" else "]")
    if end <= start:
        raise BadReply("invalid_json")
    body = text[start : end + 1]
    for candidate in (body, _TRAILING_COMMA.sub(r"\1", body)):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise BadReply("invalid_json")
