"""Scoring shared by the domain tasks: think-stripping, ROUGE-L F1, keyword recall, and the two scores that
restating the question cannot earn (novel_recall, fact_recall).

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
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
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
    # Only a Latin or digit edge needs a boundary: "氧气呼吸器1台" contains "氧气呼吸器".
    before = "(?<![a-z0-9])" if needle[0] in _ALNUM else ""
    after = "(?![a-z0-9])" if needle[-1] in _ALNUM else ""
    pattern = rf"{before}{re.escape(needle)}{after}"
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


# ------------------------------------------------------------------ what the answer adds beyond the question
#
# ROUGE-L pays an answer that restates the question: the question's words are usually in the reference too.
# These two scores count only what the reference says that the question does not, so an "echo" answer
# (answer = question) scores 0 on every item, the reference scores 1, and a paraphrase that keeps the facts
# scores on what it keeps.

# English words too common to carry content (a restated question is full of them). Modal verbs and negations
# stay content: in rules, "shall not" and "may" are the answer.
STOPWORDS = frozenset("""
a an the and or but if then than that this these those it its is are was were be been being am do does did
done of to in on at by for from with as into onto about over under between within without per via
so such could might will would what which who whom whose when where why how there
here they them their he she his her we our you your i me my mine any all each every some other another one
same also only just more most less least very much many few both either neither whether while after before
""".split())

_CN_DIGITS = "一二两三四五六七八九十百千万零〇"
# A number and the unit it is written with: 20%, 0.5%, 7m, 18MPa, 0.9Mt/a, 72小时, 4个月, 两个, 三十日.
_CN_UNITS = ("小时|分钟|秒钟|个月|万元|千元|元|日|天|年|月|周|次|人|台|个|米|厘米|毫米|公里|千米|吨|倍|级|层|"
             "项|条|款|处|座|根|块|套|组|名|所|道|口|度|kg|mm|cm|km|m|h|min|s")
_UNITS = (rf"%|‰|℃|°c|m[23³²]/(?:min|s|h)|m[23³²]|mt/a|mpa|kpa|pa|kv|v|a|kw|w|lx|db|ppm|mg/m[3³]|"
          rf"{_CN_UNITS}")
_NUM_FACT = re.compile(rf"(?<![\d.a-z])(\d+(?:\.\d+)?)\s*({_UNITS})?(?![a-z]|\.\d)")
_CN_NUM_FACT = re.compile(rf"[{_CN_DIGITS}]+(?:{_CN_UNITS})")
_CLAUSE = re.compile(rf"第[{_CN_DIGITS}\d]+[条章节款项]|(?<![\d.])\d+(?:\.\d+){{2,5}}(?!\.?\d)")
_TERM = re.compile(r"《[^》]{2,40}》|“[^”]{2,30}”|\"[^\"]{2,30}\"|'[^']{2,20}'|「[^」]{2,30}」")
_NUMBER_SPACE = re.compile(rf"(\d)\s+(?=(?:{_UNITS})(?![a-z]))")
_UNIT_TOKEN = re.compile(rf"\d+(?:\.\d+)*%?|[a-z]+|[{_CJK}]+")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _stem(word: str) -> str:
    # Enough for "requirement(s)", "clause(s)": plural and past forms match their stem.
    for suffix in ("ies", "es", "s", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_units(text: str) -> set[str]:
    """What a text says, as a set of units: character bigrams inside each run of Chinese characters (a lone
    character by itself), numbers whole (0.5%, 72), English words without stopwords, lightly stemmed."""
    units: set[str] = set()
    for token in _UNIT_TOKEN.findall(_fold(text)):
        if token[0].isdigit():
            units.add(token)
        elif token.isascii():
            if token not in STOPWORDS:
                units.add(_stem(token))
        elif len(token) == 1:
            units.add(token)
        else:
            units.update(token[i : i + 2] for i in range(len(token) - 1))
    return units


def novel_units(reference: str, question: str) -> set[str]:
    """The reference's content units that the question does not already contain."""
    return content_units(reference) - content_units(question)


def novel_recall(prediction: str, reference: str, question: str) -> float:
    """Share of what the reference says beyond the question (its content units absent from the question) that
    the prediction says too. Restating the question earns nothing; 0.0 when the reference adds nothing."""
    wanted = novel_units(reference, question)
    if not wanted:
        return 0.0
    return len(wanted & content_units(prediction)) / len(wanted)


def key_facts(reference: str, keywords: Iterable[str] = ()) -> list[str]:
    """The facts a reference states: numbers with their units, clause numbers (第十二条, 6.3.2), titles and quoted
    terms (《…》, “…”, 'shall'), and the item's own keywords."""
    text = _fold(reference)
    found = [k.strip() for k in keywords if k and k.strip()]
    found += _CLAUSE.findall(text)
    found += [t.strip("《》“”\"'「」") for t in _TERM.findall(unicodedata.normalize("NFKC", reference))]
    found += [f"{num}{unit}" for num, unit in _NUM_FACT.findall(text)]
    clauses = set(_CLAUSE.findall(text))
    # "一个" (one of something) says nothing; a numeral inside a clause number (第五十九条) is that clause.
    found += [f for f in _CN_NUM_FACT.findall(text) if f != "一个" and not any(f in c for c in clauses)]
    # One fact once: 18MPa and 18mpa alike, and "2个" not beside "2个安全出口", which states it.
    folded = list(dict.fromkeys(_NUMBER_SPACE.sub(r"\1", _fold(f)) for f in found if f.strip()))
    return [f for f in folded if not any(f != g and f in g for g in folded)]


def states_fact(text: str, fact: str) -> bool:
    """The fact is in the text, a number and its unit written together or apart ("18 MPa" states "18mpa")."""
    return contains_keyword(_NUMBER_SPACE.sub(r"\1", _fold(text)), _NUMBER_SPACE.sub(r"\1", _fold(fact)))


def fact_recall(prediction: str, reference: str, question: str, keywords: Iterable[str] = ()) -> float:
    """Share of the reference's key facts that the question does not state and the prediction does. A reference
    without such facts is scored by novel_recall instead, so every item gets a number."""
    facts = [f for f in key_facts(reference, keywords) if not states_fact(question, f)]
    if not facts:
        return novel_recall(prediction, reference, question)
    return sum(states_fact(prediction, f) for f in facts) / len(facts)


def score_qa(doc: dict, reply: str, *, rouge: str = "auto") -> dict[str, float]:
    """Every score of one free answer, after dropping <think> blocks: the two that restating the question
    cannot earn, ROUGE-L (`rouge`: "char" for Chinese, "word" for English, "auto" by the reference's script)
    and keyword recall. The tasks' utils.py call this with their own ROUGE name."""
    answer = strip_think(reply)
    reference, question = doc["answer"], doc["question"]
    name = "rouge_l_char" if rouge == "char" else "rouge_l"  # "auto" reports as rouge_l, whichever unit it used
    if rouge == "auto":
        rouge = "char" if re.search(f"[{_CJK}]", reference) else "word"
    rouge_l = rouge_l_char(answer, reference) if rouge == "char" else rouge_l_word(answer, reference)
    return {
        "fact_recall": fact_recall(answer, reference, question, doc.get("keywords") or ()),
        "novel_recall": novel_recall(answer, reference, question),
        name: rouge_l,
        "keyword_recall": keyword_recall(answer, doc.get("keywords") or (), reference),
    }


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
        # What the model is asked: the question, or (retrieval arms) the passages retrieved for it, then it.
        "prompt": str(raw.get("prompt") or question),
        "answer": answer,
        "keywords": [str(k) for k in keywords],
        **_provenance(raw),
    }


def _provenance(raw: dict) -> dict:
    """Where an item comes from: its source file (datagen's items name their chunk too) and the passage that
    answers it, so a run can tell whether it trained on that passage."""
    source = raw.get("source") or ""
    chunk = source.get("chunk_id", "") if isinstance(source, dict) else raw.get("chunk_id", "")
    file = source.get("file", "") if isinstance(source, dict) else source
    return {"source": str(file), "chunk_id": str(chunk or ""), "evidence": str(raw.get("evidence", ""))}


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
        "prompt": str(raw.get("prompt") or raw["question"]),
        "article": str(raw.get("article", "")),
        **_provenance(raw),
    }


def load_split(kind: str, data_file: str, task_dir: Path):
    """A datasets.DatasetDict with one `test` split, for lm-eval's `custom_dataset`."""
    import datasets  # lm-eval's own dependency

    path = resolve_data_file(data_file, task_dir)
    make = qa_row if kind == "qa" else mc_row
    rows = [make(raw, i) for i, raw in enumerate(read_jsonl(path))]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
