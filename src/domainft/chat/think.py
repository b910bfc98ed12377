"""R1-style `<think>` blocks: split off a finished answer, and held back from a streaming one (think="hide")."""

from __future__ import annotations

from .model import Think

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_think(text: str) -> tuple[str | None, str]:
    """(thinking, answer). The opening tag may be missing: R1 templates put `<think>` in the prompt."""
    if THINK_CLOSE in text:
        thinking, answer = text.split(THINK_CLOSE, 1)
        thinking = thinking.strip()
        thinking = thinking.removeprefix(THINK_OPEN)
        return thinking.strip(), answer.strip()
    if text.lstrip().startswith(THINK_OPEN):  # cut off while still thinking
        return text.lstrip()[len(THINK_OPEN):].strip(), ""
    return None, text


class ThinkFilter:
    """Streaming side of think="hide": holds text back while it may still be inside a think block."""

    def __init__(self, mode: Think, expect_thinking: bool):
        self.mode, self.expect = mode, expect_thinking
        self.buffer = ""
        self.passing = mode == "show"

    def feed(self, piece: str) -> str:
        if self.passing:
            return piece
        self.buffer += piece
        if THINK_CLOSE in self.buffer:
            self.passing = True
            return self.buffer.split(THINK_CLOSE, 1)[1].lstrip()
        head = self.buffer.lstrip()
        opening = head.startswith(THINK_OPEN) or THINK_OPEN.startswith(head)
        if not opening and not self.expect:  # plainly no think block: stream from here on
            self.passing = True
            return self.buffer
        return ""

    def finish(self) -> str:
        """What is still held at the end: everything, when the think block never closed nor opened."""
        if self.passing:
            return ""
        _, answer = split_think(self.buffer)
        return answer
