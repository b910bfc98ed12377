"""Scoring shared by the domain tasks: think-stripping, ROUGE-L F1 and keyword recall.

Standard library only, so the task folders run under plain `lm_eval` with nothing else installed.
(`metric: rouge` needs a download, and rouge_score drops non-Latin tokens: Chinese would score 0.)
domainft.evaluate.metrics re-exports these functions; this file is the single source.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ARTICLE = re.compile(r"第[一二三四五六七八九十百零〇\d]+[条章节]")


def strip_think(text: str) -> str:
    """Drop R1-style reasoning: whole <think>...</think> blocks, a dangling opener (truncated
    reasoning) and everything before a closer whose opener sat in the prompt."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return text.strip()


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters to ASCII), lower case, punctuation to spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w%‰℃³²]+", " ", text).split())


def char_tokens(text: str) -> list[str]:
    """Characters without whitespace or punctuation: the unit for Chinese ROUGE."""
    return [c for c in normalize(text) if not c.isspace()]


def word_tokens(text: str) -> list[str]:
    """Lower-case alphanumeric words, as rouge_score tokenizes English (no stemming)."""
    return _WORD.findall(normalize(text))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            cur = row[j]
            row[j] = prev + 1 if x == y else max(row[j], row[j - 1])
            prev = cur
    return row[-1]


def rouge_l_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F1 over two token sequences (0.0 when either is empty)."""
    if not prediction or not reference:
        return 0.0
    lcs = _lcs(prediction, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l_char(prediction: str, reference: str) -> float:
    return rouge_l_f1(char_tokens(prediction), char_tokens(reference))


def rouge_l_word(prediction: str, reference: str) -> float:
    return rouge_l_f1(word_tokens(prediction), word_tokens(reference))


def _compact(text: str) -> str:
    # Spaces only matter between Latin words: "72 小时" and "72小时" must match alike.
    text = normalize(text)
    return re.sub(rf"\s*([{_CJK}])\s*", r"\1", text)


def contains_keyword(text: str, keyword: str) -> bool:
    """Keyword found in text after normalisation; Latin/digit edges must be word boundaries
    ("72小时" does not match inside "172小时", "can" not inside "cannot")."""
    needle = _compact(keyword)
    if not needle:
        return False
    pattern = rf"(?<![a-z0-9]){re.escape(needle)}(?![a-z0-9])"
    return re.search(pattern, _compact(text)) is not None


def derive_keywords(reference: str) -> list[str]:
    """Keywords for an item that names none: numbers and article references in the answer."""
    found = _ARTICLE.findall(reference) + _NUMBER.findall(unicodedata.normalize("NFKC", reference))
    return list(dict.fromkeys(found))


def keyword_recall(prediction: str, keywords: Iterable[str], reference: str = "") -> float:
    """Share of keywords present in the prediction. Without keywords (none given, none derivable)
    it falls back to the share of the reference's distinct character bigrams present."""
    keywords = [k for k in keywords if k and k.strip()] or derive_keywords(reference)
    if keywords:
        return sum(contains_keyword(prediction, k) for k in keywords) / len(keywords)
    ref, pred = char_tokens(reference), "".join(char_tokens(prediction))
    bigrams = {a + b for a, b in zip(ref, ref[1:])}
    return sum(bg in pred for bg in bigrams) / len(bigrams) if bigrams else 0.0


# ------------------------------------------------------------------ data files for the tasks


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
    if not rows:
        raise ValueError(f"{path}: no items")
    return rows


def resolve_data_file(data_file: str, task_dir: Path) -> Path:
    """Task YAML names its data relative to its own folder; the run folder's variants name it absolutely."""
    path = Path(data_file).expanduser()
    path = path if path.is_absolute() else task_dir / path
    if not path.exists():
        raise FileNotFoundError(f"task data file not found: {path}")
    return path


def qa_row(raw: dict, index: int) -> dict:
    """One QA item in the task's shape, from hand-written items (question/answer/keywords) or
    datagen's alpaca splits (instruction/input/output)."""
    question = raw.get("question") or raw.get("instruction") or ""
    if raw.get("input") and not raw.get("question"):
        question = f"{question}\n{raw['input']}"
    answer = raw.get("answer") or raw.get("output") or ""
    if not question or not answer:
        raise ValueError(f"QA item {index + 1} needs question/instruction and answer/output")
    keywords = raw.get("keywords") or []
    return {
        "id": str(raw.get("id", index + 1)),
        "question": question,
        "answer": answer,
        "keywords": [str(k) for k in keywords],
        "source": str(raw.get("source", "")),
    }


def mc_row(raw: dict, index: int) -> dict:
    choices = raw.get("choices")
    answer = raw.get("answer")
    if not isinstance(choices, list) or len(choices) < 2 or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"MC item {index + 1} needs choices (2 or more) and an answer index")
    return {
        "id": str(raw.get("id", index + 1)),
        "question": raw["question"],
        "choices": [str(c) for c in choices],
        "answer": answer,
        "source": str(raw.get("source", "")),
        "article": str(raw.get("article", "")),
    }


def load_split(kind: str, data_file: str, task_dir: Path):
    """A datasets.DatasetDict with one `test` split, for lm-eval's `custom_dataset`."""
    import datasets  # lm-eval's own dependency

    path = resolve_data_file(data_file, task_dir)
    make = qa_row if kind == "qa" else mc_row
    rows = [make(raw, i) for i, raw in enumerate(read_jsonl(path))]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
