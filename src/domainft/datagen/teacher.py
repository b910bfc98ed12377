"""Datagen's teacher: what answers a chunk with QA pairs and the knowledge probe's questions.

`make_teacher` gives an LLM (an OpenAI-compatible or zhipuai endpoint, through domainft.llm), asked with the prompt
file as one JSON-constrained chat, or the offline extractive teacher (recipe key `provider: extractive`), which is no
LLM: one question per article, numbered clause or section, answered with that unit's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..extract import Chunk
from ..extract.chunks import split_span
from ..extract.structure import _CLAUSE, _CN_ARTICLE, detect_headings, is_title_like
from ..llm.providers import Provider, make_provider
from ..recipe import DatagenConfig
from .prompts import PromptSpec, is_cjk


@dataclass
class Answer:
    text: str | None = None  # raw model output, parsed and checked by the runner
    pairs: list[dict[str, str]] | None = None  # already structured (extractive)
    tokens: int | None = None


class Teacher:
    """What the runner asks: `complete` (a chunk's pairs) and `probe` (its knowledge-probe questions)."""

    url: str | None = None  # the server, where there is one (else the model names the target)

    async def check(self) -> None:
        """Fail fast (TeacherError) when the teacher cannot work at all: no key, nothing listening."""

    async def complete(self, chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None) -> Answer:
        raise NotImplementedError

    async def probe(self, chunk: Chunk, spec: PromptSpec, n_probe: int, questions: list[str]) -> Answer:
        """The knowledge probe's questions on the chunk, worded apart from its training `questions`."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class LLMTeacher(Teacher):
    """An LLM, asked with the prompt file: its system prompt and the chunk's rendered instruction as one chat."""

    def __init__(self, provider: Provider):
        self.provider, self.url = provider, provider.url

    async def check(self) -> None:
        await self.provider.check()

    async def complete(self, chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None) -> Answer:
        return await self._ask(_messages(chunk, spec, n_pairs, min_pairs), spec, n_pairs)

    async def probe(self, chunk: Chunk, spec: PromptSpec, n_probe: int, questions: list[str]) -> Answer:
        return await self._ask(_messages(chunk, spec, n_probe, probe_of=questions), spec, n_probe)

    async def _ask(self, messages: list[dict[str, str]], spec: PromptSpec, n_pairs: int) -> Answer:
        reply = await self.provider.chat(messages, schema=spec.request_schema(n_pairs), temperature=spec.temperature,
                                         max_tokens=spec.max_tokens)
        return Answer(text=reply.text, tokens=reply.tokens)

    async def aclose(self) -> None:
        await self.provider.aclose()


def _messages(chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None, *,
              probe_of: list[str] | None = None) -> list[dict[str, str]]:
    return [{"role": "system", "content": spec.system.strip()},
            {"role": "user", "content": spec.render(chunk, n_pairs, min_pairs, probe_of=probe_of)}]


# ------------------------------------------------------------------ extractive (offline)


class ExtractiveTeacher(Teacher):
    """Offline and deterministic: one question per article (第十条), numbered clause or section,
    answered with that unit's own text. No model; useful for smoke runs and as a floor."""

    async def complete(self, chunk: Chunk, spec: PromptSpec, n_pairs: int, min_pairs: int | None = None) -> Answer:
        return Answer(pairs=extractive_pairs(chunk, spec, n_pairs))

    async def probe(self, chunk: Chunk, spec: PromptSpec, n_probe: int, questions: list[str]) -> Answer:
        return Answer(pairs=extractive_pairs(chunk, spec, n_probe, probe=True))


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


def make_teacher(cfg: DatagenConfig) -> Teacher:
    """The recipe's teacher; an LLM's errors point at the datagen section."""
    return ExtractiveTeacher() if cfg.provider == "extractive" else LLMTeacher(make_provider(cfg, "datagen"))
