"""Teacher prompts as data (datagen/*.yaml), and checking what the teacher sends back.

A reply, parsed and repaired where that is safe (domainft.llm.replies), is checked against the prompt file's
JSON schema and length limits, and grounded in the chunk. Every rejected pair or reply is counted under a reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import RecipeError, did_you_mean
from ..extract import Chunk
from ..llm.replies import BadReply
from ..resources import named_file


class ProbeTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    article: str
    clause: str
    section: str


class ExtractiveTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    article: str = Field(description="Question for a 第X条 article; fields {title} {label}.")
    clause: str = Field(description="Question for a numbered clause; fields {title} {label} {name}.")
    section: str = Field(description="Question for an unnumbered section; fields {title} {name}.")
    probe: ProbeTemplates | None = Field(None, description="The knowledge probe's questions: the same units asked "
                                         "in other words (the answer is the unit's text, as in training).")


class ReplyShape(BaseModel):
    """Where the pairs are in the teacher's JSON reply: a list under `list_key` (None: the reply is the list) of
    objects whose `question` and `answer` fields hold the pair. CoalQA's own prompt asks for
    [{"input": ..., "output": ...}]: list_key null, question input, answer output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    list_key: str | None = "pairs"
    question: str = "question"
    answer: str = "answer"


class PromptSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    language: Literal["zh", "en"]
    system: str
    instruction: str
    pairs_per_chunk: int = Field(ge=1, le=50)
    question_max_chars: int = Field(ge=10)
    answer_max_chars: int = Field(ge=10)
    answer_min_chars: int = Field(1, ge=1)
    min_grounding: float = Field(0.0, ge=0, le=1)
    temperature: float = Field(0.3, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16)
    extractive: ExtractiveTemplates
    reply: ReplyShape = ReplyShape()
    prefer: list[str] = Field(default_factory=list, description="Chunks holding any of these words (whole words, any "
                              "case) are asked first, so datagen.max_chunks keeps them.")
    schema_: dict[str, Any] = Field(alias="schema")
    # The knowledge probe: extra questions per chunk, held out of every split, asking whether the tuned model
    # learned the passage. `probe_instruction` is the teacher's (Jinja, the instruction's fields plus
    # `questions`: the chunk's training questions, to word the probe differently); `extractive.probe` the
    # offline provider's.
    probe_per_chunk: int = Field(0, ge=0, le=20)
    probe_instruction: str | None = None

    @model_validator(mode="after")
    def _probe_has_templates(self) -> PromptSpec:
        if self.probe_per_chunk and (self.probe_instruction is None or self.extractive.probe is None):
            raise ValueError("probe_per_chunk needs probe_instruction and extractive.probe")
        return self

    def _list_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        key = self.reply.list_key
        return schema if key is None else schema.setdefault("properties", {}).setdefault(key, {})

    @property
    def item_schema(self) -> dict[str, Any]:
        return self._list_schema(json.loads(json.dumps(self.schema_))).get("items", {})

    def request_schema(self, n_pairs: int) -> dict[str, Any]:
        """The schema sent for constrained output, tightened to this run's limits: a grammar-constrained
        teacher then cannot run on past the pair count or the length caps (and into max_tokens)."""
        schema = json.loads(json.dumps(self.schema_))
        pairs = self._list_schema(schema)
        pairs["maxItems"] = min(pairs.get("maxItems", n_pairs), n_pairs)
        props = pairs.setdefault("items", {}).setdefault("properties", {})
        for key, limit in ((self.reply.question, self.question_max_chars), (self.reply.answer, self.answer_max_chars)):
            field_schema = props.setdefault(key, {"type": "string"})
            field_schema["maxLength"] = min(field_schema.get("maxLength", limit), limit)
        return schema

    def text_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(by_alias=True), sort_keys=True).encode()).hexdigest()

    def render(self, chunk: Chunk, n_pairs: int, min_pairs: int | None = None, *,
               probe_of: list[str] | None = None) -> str:
        """The instruction for one chunk: n_pairs is the most pairs asked for, min_pairs the fewest (the same when
        the recipe asks a fixed count); with `probe_of` (the chunk's training questions), the probe instruction for
        `n_pairs` probe questions."""
        env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
        template = self.instruction if probe_of is None else self.probe_instruction or ""
        return env.from_string(template).render(
            text=chunk.text, title=chunk.title, heading=" / ".join(chunk.heading_path) or chunk.title,
            file=chunk.file, n_pairs=n_pairs, min_pairs=min(min_pairs or n_pairs, n_pairs),
            question_max_chars=self.question_max_chars, answer_max_chars=self.answer_max_chars,
            questions=probe_of or [],
        )

    def of(self, chunk: Chunk) -> PromptSpec:
        """The spec for a chunk: one file answers for every chunk (PromptSet's interface)."""
        return self

    def prefers(self, text: str) -> bool:
        """Whether the text holds one of the `prefer` words."""
        return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) for word in self.prefer)


def load_prompts(name_or_path: str, base_dir: Path | None = None) -> PromptSpec:
    """`coal` -> datagen/coal.yaml; a path (relative to the recipe) -> that file."""
    from ..prompt_files import prompt_names

    path = named_file(name_or_path, "datagen", base_dir)
    if not path.exists():
        known = prompt_names()
        hint = did_you_mean(name_or_path, known) or (f"known: {', '.join(known)}" if known else None)
        raise RecipeError(f"prompt file '{name_or_path}' not found", where="datagen.prompts", hint=hint)
    return load_prompt_file(path)


def load_prompt_set(recipe) -> dict[str | None, PromptSpec]:
    """The recipe's prompts: {None: spec} for one file, {language: spec} for a language family (general), whose
    members must agree on how many pairs and probe questions they ask for."""
    from ..prompt_files import prompt_paths

    specs = {lang: load_prompt_file(path) for lang, path in prompt_paths(recipe).items()}
    first = next(iter(specs.values()))
    for lang, spec in specs.items():
        if (spec.pairs_per_chunk, spec.probe_per_chunk) != (first.pairs_per_chunk, first.probe_per_chunk):
            raise RecipeError("the language family's files ask for different pair or probe counts",
                              where=prompt_paths(recipe)[lang], hint="make pairs_per_chunk and probe_per_chunk agree")
    return specs


class PromptSet:
    """The prompts a run asks with: one file for every chunk, or a language family (general_zh, general_en) of which
    each document gets its own language's (decided once per document, on all of its text)."""

    def __init__(self, specs: dict[str | None, PromptSpec], chunks: list[Chunk] = ()):
        from ..prompt_files import language_of

        self.specs = specs
        self.first = next(iter(specs.values()))
        texts: dict[str, list[str]] = {}
        for chunk in chunks:
            texts.setdefault(chunk.file, []).append(chunk.text)
        self.language = {} if None in specs else {f: language_of("".join(t)) for f, t in texts.items()}

    def of(self, chunk: Chunk) -> PromptSpec:
        return self.specs.get(self.language.get(chunk.file)) or self.specs.get(None) or self.first

    @property
    def pairs_per_chunk(self) -> int:
        return self.first.pairs_per_chunk

    @property
    def probe_per_chunk(self) -> int:
        return self.first.probe_per_chunk

    def text_hash(self) -> str:
        """One file: its hash (runs made before families keep their fingerprint); a family: all of them."""
        if None in self.specs:
            return self.specs[None].text_hash()
        return hashlib.sha256(json.dumps(sorted((k, v.text_hash()) for k, v in self.specs.items())).encode()).hexdigest()


def load_prompt_file(path: Path) -> PromptSpec:
    """One prompt YAML, validated, its templates rendered once on a probe chunk."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = PromptSpec.model_validate(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RecipeError(f"YAML syntax error: {getattr(exc, 'problem', exc)}",
                          where=f"{path}:{mark.line + 1}" if mark else path) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise RecipeError(f"'{key}': {err['msg']}", where=path) from None
    try:  # a broken or hostile template fails here, in one line, not mid-run inside a worker
        probe = Chunk.make("probe.txt", ["probe"], 0, "probe", title="probe")
        spec.render(probe, spec.pairs_per_chunk)
        if spec.probe_instruction is not None:
            spec.render(probe, spec.probe_per_chunk or 1, probe_of=["probe?"])
    except Exception as exc:  # noqa: BLE001 - the sandbox's SecurityError, syntax errors, undefined names, imports
        detail = " ".join(str(exc).split())[:160]
        raise RecipeError(f"'instruction' or 'probe_instruction' does not render: {type(exc).__name__}: {detail}", where=path) from None
    return spec


# ------------------------------------------------------------------ checking replies


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """A small JSON-schema check (type, required, properties, items, min/maxItems, min/maxLength, enum)."""
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    expected = schema.get("type")
    if expected and not isinstance(value, kinds.get(expected, object)):
        return [f"{path or 'reply'} is not {expected}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path} not in enum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path} shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path} longer than {schema['maxLength']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key} missing")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors.extend(schema_errors(value[key], sub, f"{path}.{key}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path} has fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    return errors


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in text if c.isalnum())


def is_cjk(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum("\u4e00" <= c <= "\u9fff" for c in letters) / len(letters) > 0.3


def grounding(answer: str, source: str) -> float:
    """Share of the answer's character bigrams (CJK) or words (Latin) that occur in the source text."""
    if is_cjk(answer):
        a, s = _norm(answer), _norm(source)
        grams = [a[i : i + 2] for i in range(len(a) - 1)] or [a]
        return sum(g in s for g in grams) / len(grams) if a else 0.0
    words = re.findall(r"\w+", answer.lower())
    vocab = set(re.findall(r"\w+", source.lower()))
    return sum(w in vocab for w in words) / len(words) if words else 0.0


def check_pairs(raw: Any, spec: PromptSpec, chunk: Chunk, max_pairs: int) -> tuple[list[dict[str, str]], Counter]:
    """Valid {question, answer} pairs from one parsed reply, and rejections counted by reason."""
    shape = spec.reply
    # A bare list where an envelope was asked for: the envelope is safely implied (and one asked-for list under
    # its key when the prompt wants a bare list).
    items = raw if isinstance(raw, list) else raw.get(shape.list_key or "pairs") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise BadReply("schema")
    rejected: Counter = Counter()
    pairs: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in items:
        if (not isinstance(item, dict) or not isinstance(item.get(shape.question), str)
                or not isinstance(item.get(shape.answer), str)):
            rejected["schema"] += 1
            continue
        question, answer = item[shape.question].strip(), item[shape.answer].strip()
        if not question or len(answer) < spec.answer_min_chars:
            rejected["empty"] += 1
        elif len(question) > spec.question_max_chars:
            rejected["question_too_long"] += 1
        elif len(answer) > spec.answer_max_chars:
            rejected["answer_too_long"] += 1
        elif schema_errors({shape.question: question, shape.answer: answer}, spec.item_schema):
            rejected["schema"] += 1
        elif grounding(answer, chunk.text) < spec.min_grounding:
            rejected["ungrounded"] += 1
        elif _norm(question) in seen:
            rejected["duplicate_in_reply"] += 1
        elif len(pairs) >= max_pairs:
            rejected["over_count"] += 1
        else:
            seen.add(_norm(question))
            pairs.append({"question": question, "answer": answer})
    return pairs, rejected
