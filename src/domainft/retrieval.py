"""Retrieval over the run's own chunks: BM25 (bm25s) on jieba words for Chinese and lower-case words otherwise.

The retrieval arms of eval (eval.retrieval) put the top-k passages before each question, precomputed into a task's
data file so plain `lm_eval` reproduces them; `domainft chat --rag` does the same per question and cites the
passages it used (file and section). How passages and question are put together is data:
eval_tasks/retrieval_prompt.yaml.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from .errors import DataError, RecipeError
from .extract import Chunk, read_chunks
from .resources import folder

PROMPT_FILE = "retrieval_prompt.yaml"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:\.[0-9]+)*")


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float

    @property
    def citation(self) -> str:
        """file › section: where the passage is, as the answer cites it."""
        heading = " / ".join(self.chunk.heading_path)
        return f"{self.chunk.file} › {heading}" if heading else self.chunk.file


def tokenize(text: str) -> list[str]:
    """BM25 terms: jieba's search-mode words inside runs of Chinese characters, lower-case words and numbers
    elsewhere; punctuation and one-character function words dropped."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    terms: list[str] = []
    for run in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK.match(run):
            terms += [w for w in jieba.lcut_for_search(run) if len(w) > 1 or w not in _CN_FUNCTION]
        else:
            terms.append(run)
    return terms


_CN_FUNCTION = frozenset("的了和与及或在是有为对由把被之其而并等中上下")


class Retriever:
    """A BM25 index over chunks; `search(question, k)` gives the k best passages, best first."""

    def __init__(self, chunks: list[Chunk]):
        import bm25s

        if not chunks:
            raise DataError("no chunks to retrieve from: run extract first")
        self.chunks = chunks
        self.index = bm25s.BM25()
        self.index.index([tokenize(c.text) or ["\u2400"] for c in chunks], show_progress=False)

    def search(self, question: str, k: int) -> list[Hit]:
        terms = tokenize(question) or ["\u2400"]
        ids, scores = self.index.retrieve([terms], k=min(k, len(self.chunks)), show_progress=False)
        return [Hit(self.chunks[int(i)], float(s)) for i, s in zip(ids[0], scores[0]) if float(s) > 0]


def run_retriever(chunks_file: Path) -> Retriever:
    """A retriever over a run's extract/chunks.jsonl."""
    return Retriever(read_chunks(chunks_file))


@cache
def prompt_templates(path: Path | None = None) -> dict[str, str]:
    """retrieval_prompt.yaml: `passage`, `zh` and `en` templates (a bad file is a one-line error naming it)."""
    path = path or folder("eval_tasks") / PROMPT_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [k for k in ("passage", "zh", "en") if not isinstance((data or {}).get(k), str)]
    if missing:
        raise RecipeError(f"retrieval prompt needs {', '.join(missing)}", where=path)
    return data


def with_passages(question: str, hits: list[Hit]) -> str:
    """The question with the retrieved passages before it, as eval_tasks/retrieval_prompt.yaml says."""
    if not hits:
        return question
    t = prompt_templates()
    passages = "\n\n".join(
        t["passage"].format(n=n, file=h.chunk.file, heading=" / ".join(h.chunk.heading_path) or h.chunk.title,
                            text=h.chunk.text.strip()) for n, h in enumerate(hits, 1))
    return t["zh" if _CJK.search(question) else "en"].format(passages=passages, question=question)
