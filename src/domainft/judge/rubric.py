"""A rubric is data: the judge's system prompt, the user-message template, the criteria, the score scale in
words, and the JSON schema of the reply. Checked whole on load, so a mistake is one line naming file and key,
not a failure in the middle of a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RecipeError, did_you_mean
from ..resources import folder, named_file


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Key of this criterion's score in the reply.")
    description: str


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    system: str
    template: str = Field(description="Jinja user message; fields: the item's (question, answer, ...), criteria, "
                          "scale (the lines '0: wrong' ...).")
    criteria: list[Criterion] = Field(min_length=1)
    scale: dict[int, str] = Field(min_length=2, description="score -> what it means")
    combine: Literal["min", "mean"] = Field("min", description="Overall score of several criteria.")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=16)
    schema_: dict[str, Any] = Field(alias="schema")
    path: Path | None = Field(None, exclude=True)

    @property
    def low(self) -> int:
        return min(self.scale)

    @property
    def high(self) -> int:
        return max(self.scale)

    def text_hash(self) -> str:
        """What the judge was told: a change makes every earlier verdict stale."""
        return hashlib.sha256(json.dumps(self.model_dump(by_alias=True, mode="json"), sort_keys=True,
                                         ensure_ascii=False).encode()).hexdigest()

    def scale_text(self) -> str:
        return "\n".join(f"{score}: {words}" for score, words in sorted(self.scale.items()))

    def criteria_text(self) -> str:
        return "\n".join(f"- {c.name}: {c.description.strip()}" for c in self.criteria)

    def render(self, fields: dict[str, str]) -> str:
        from ..templating import environment  # the sandboxed one: a rubric is user data

        return environment().from_string(self.template).render(
            **fields, criteria=self.criteria_text(), scale=self.scale_text())

    def messages(self, fields: dict[str, str]) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system.strip()}, {"role": "user", "content": self.render(fields)}]


def load_rubric(name_or_path: str, *, home: str, base_dir: Path | None, fields: tuple[str, ...], where: str) -> Rubric:
    """`curate_rubric` -> <home>/curate_rubric.yaml (home: datagen or eval_tasks); a path (relative to the recipe)
    -> that file. `fields` are the names the caller fills the template with; `where` is the recipe key."""
    path = rubric_path(name_or_path, home=home, base_dir=base_dir)
    if not path.exists():
        known = sorted(p.stem for p in folder(home).glob("*rubric*.yaml"))
        hint = did_you_mean(name_or_path, known) or (f"known: {', '.join(known)}" if known else None)
        raise RecipeError(f"rubric '{name_or_path}' not found ({path})", where=where, hint=hint)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise RecipeError("a rubric is a mapping (name, system, template, criteria, scale, schema)", where=path)
        rubric = Rubric.model_validate({**data, "path": path})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RecipeError(f"YAML syntax error: {getattr(exc, 'problem', exc)}",
                          where=f"{path}:{mark.line + 1}" if mark else path) from None
    except ValidationError as exc:
        errors = exc.errors()  # a misspelt key shows up as unknown and as missing: the unknown one says why
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = ".".join(str(p) for p in err["loc"]) or "(top)"
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(str(err["loc"][-1]), [f.alias or n for n, f in Rubric.model_fields.items()])
            raise RecipeError(f"unknown key '{key}'", where=path, hint=hint) from None
        raise RecipeError(f"'{key}': {err['msg']}", where=path) from None
    _check_schema(rubric, path)
    try:  # a broken or hostile template, or one naming a field nobody fills, fails here in one line
        rubric.render({name: "probe" for name in fields})
    except Exception as exc:  # noqa: BLE001 - the sandbox's SecurityError, syntax errors, undefined names
        detail = " ".join(str(exc).split())[:160]
        raise RecipeError(f"'template' does not render: {type(exc).__name__}: {detail}", where=path,
                          hint=f"fields: {', '.join(fields)}, criteria, scale") from None
    return rubric


def rubric_path(name_or_path: str, *, home: str, base_dir: Path | None) -> Path:
    return named_file(name_or_path, home, base_dir)


def _check_schema(rubric: Rubric, path: Path) -> None:
    """The reply schema must ask for what the judge code reads: an integer per criterion and a reason."""
    schema = rubric.schema_
    props = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(props, dict):
        raise RecipeError("'schema' must be an object schema with properties", where=path)
    required = set(schema.get("required") or [])
    for name, kind in [*((c.name, "integer") for c in rubric.criteria), ("reason", "string")]:
        prop = props.get(name)
        if not isinstance(prop, dict) or prop.get("type") != kind:
            raise RecipeError(f"'schema.properties.{name}' must be {{type: {kind}}}", where=path,
                              hint="one integer per criterion name, and a string 'reason'")
        if name not in required:
            raise RecipeError(f"'schema.required' lacks '{name}'", where=path)
        enum = prop.get("enum")
        if enum is not None and sorted(enum) != sorted(rubric.scale):
            raise RecipeError(f"'schema.properties.{name}.enum' is {enum}, the scale is {sorted(rubric.scale)}",
                              where=path)
