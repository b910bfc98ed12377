"""Static checks before any launch: in-process, no engine or torch import, well under a second. They check; they
render nothing (domainft.render.render does; render_checked runs check_plan, render, check_rendered).

What each engine accepts comes from its snapshot `engines/<name>/known.json` (made by
scripts/snapshot_engine_schema.py inside the engine's venv). `deep=True` also runs the engine's own
validator in its venv. The cheapest checks come first: a misspelt key is refused before anything is rendered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import process
from ..chat_formats import alpaca_formats, chat_format, instructions, system_turn
from ..errors import DataError, EngineError, RecipeError, did_you_mean
from . import NAMES, get_engine
from .base import Engine
from .records import fold_record, sample_records
from .venv import require_engine

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ..plan import Plan



def check_plan(plan: Plan) -> None:
    """What the plan asks, checked before anything is rendered: the engine's own recipe checks (override keys,
    templates), the model folder, the eval set, the chat template against the tokenizer. Raises a one-line
    UserError."""
    get_engine(plan.engine).check_recipe(plan)
    check_model(plan)
    check_eval_set(plan)
    check_chat_template(plan)


def check_rendered(plan: Plan, files: dict[str, str], deep: bool = False) -> None:
    """The rendered files (domainft.render.render), parsed back as the engine reads them (every key one it knows),
    then the dataset's columns; `deep` also runs the engine's own validator in its venv (seconds: it imports the
    engine). Raises a one-line UserError."""
    engine = get_engine(plan.engine)
    engine.check_files(plan, files)
    check_dataset(plan)
    if deep:
        deep_check(engine, engine.config(files), engine.config_file)


def check_engine_keys(data: dict[str, Any], engine_name: str | None = None) -> None:
    """From the recipe file's data, before the recipe schema is loaded (pydantic's import is most of a validate
    run): an engine_overrides key the engine does not know, or one that would move its output, is refused at
    once. Plugin options pass here (whether their plugin is on is checked with the schema); anything malformed
    is left to the schema's own error."""
    name = engine_name or data.get("engine", NAMES[0])
    overrides = data.get("engine_overrides")
    if name not in NAMES or not isinstance(overrides, dict):
        return
    engine = get_engine(name)
    check_overrides(engine, overrides, plugins=list(engine.known().get("plugin_keys", {})))


def accepted_keys(engine: Engine, plugins: Any = ()) -> list[str]:
    """The engine's config keys, plus the options of the listed plugins (Axolotl reads those only with the plugin)."""
    known = engine.known()
    plugin_keys = known.get("plugin_keys", {})
    active = plugins if isinstance(plugins, list) else []
    return [*known["config_keys"], *(k for p in active for k in plugin_keys.get(p, []))]


def check_overrides(engine: Engine, overrides: dict[str, Any], plugins: Any = ()) -> None:
    """`plugins`: the plugins the recipe turns on; the overrides may add more. Runs before the rendered file is
    parsed: an override key is checked here before it can break the YAML."""
    keys = accepted_keys(engine, [*(plugins or []), *(overrides.get("plugins") or [])])
    plugin_of = {k: p for p, ks in engine.known().get("plugin_keys", {}).items() for k in ks}
    for key in overrides:
        if key in engine.run_folder_keys:
            raise RecipeError(f"'{key}' is set by domainft inside the run folder", where=f"engine_overrides.{key}",
                              hint="set run_dir to move the whole run")
        if key not in keys and key in plugin_of:
            plugin = plugin_of[key]
            raise RecipeError(f"'{key}' is an option of the {plugin} plugin, which is not on",
                              where=f"engine_overrides.{key}",
                              hint=f"set {engine.plugin_switches[plugin]}" if plugin in engine.plugin_switches
                              else "add it to plugins")
        if key not in keys:
            hint = did_you_mean(key, keys)
            raise RecipeError(
                f"'{key}' is not a {engine.name} {engine.known()['version']} option",
                where=f"engine_overrides.{key}",
                hint=hint or f"see src/domainft/engines/{engine.name}/known.json",
            )


def check_rendered_keys(engine: Engine, config: dict[str, Any], file: str) -> None:
    """A template typo (a key the engine does not know) fails here, not on a GPU."""
    keys = accepted_keys(engine, config.get("plugins"))
    for key in config:
        if key not in keys:
            raise EngineError(f"rendered key '{key}' is unknown to {engine.name}", where=file,
                              hint=did_you_mean(key, keys))


def check_model(plan: Plan) -> None:
    """A local model folder must exist: otherwise the engine fails on it seconds into the launch (or later, on a
    GPU machine). Hub models are pulled (complete or not at all) by the model stage, and `validate` says when one
    is not pulled yet; embedded models are made on first use."""
    if plan.is_embedded or plan.is_hub:
        return
    base = plan.recipe.model.base
    path = Path(plan.model_path)
    if not path.exists():
        raise RecipeError(f"model folder {path} does not exist", where="model.base",
                          hint="a local folder (relative to the recipe), a hub id, or embedded:smollm2")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise RecipeError(f"{path} is not a Hugging Face model folder (no config.json)", where="model.base",
                          hint=f"model.base is {base!r}")


def check_eval_set(plan: Plan) -> None:
    """One eval set: datagen's validation split, or a slice of train (val_size), not both."""
    if plan.val_files and plan.recipe.training.val_size:
        raise RecipeError("datagen's validation split is already the eval set", where="training.val_size",
                          hint="set it to 0, or datagen.split.val to 0 to hold out a slice of train instead")


def check_dataset(plan: Plan) -> None:
    """Every mapped column exists in the first records of every file (a typo there trains on nothing)."""
    ds = plan.recipe.dataset
    produced = plan.datagen_dir.resolve() / "train.jsonl"
    for path in plan.train_files:
        if path == produced and not path.exists():
            continue  # datagen writes it later and validates every record it writes
        records = sample_records(path)
        columns = sorted({k for rec in records for k in rec})
        for role, column in ds.column_map().items():
            if column not in columns:
                where = f"dataset.columns.{role}" if role in ds.columns else "dataset.format"
                hint = did_you_mean(column, columns) or f"columns are {', '.join(columns)}"
                raise DataError(
                    f"{path.name}: no column '{column}' for role '{role}' ({where})", where=path, hint=hint
                )
        if ds.format == "sharegpt":
            _check_sharegpt(path, records, ds.column_map()["messages"], ds.tag_map())


def _check_sharegpt(path: Path, records: list[dict], column: str, tags: dict[str, str]) -> None:
    for rec in records:
        turns = rec[column]
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
            raise DataError(f"column '{column}' must be a list of message objects", where=path)
        fields = sorted({k for turn in turns for k in turn})
        for tag in ("role_tag", "content_tag"):
            if tags[tag] not in fields:
                raise DataError(f"messages have no field '{tags[tag]}' ({tag})", where=path,
                                hint=did_you_mean(tags[tag], fields) or f"fields are {', '.join(fields)}")
        roles = {turn.get(tags["role_tag"]) for turn in turns}
        allowed = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"], "observation", "function"}
        unknown = sorted(str(r) for r in roles - allowed)
        if unknown:
            raise DataError(f"message role '{unknown[0]}' matches no tag (dataset.tags)", where=path,
                            hint=did_you_mean(unknown[0], allowed))


# ------------------------------------------------------------------ deep: the engine's own validator

# Runs the engine's check and prints its rejection as one line on the last line of stderr.
_WRAP = """import json, sys
cfg = json.load(sys.stdin)
try:
{body}
except Exception as exc:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: every field with its message
        msg = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in errors())
    else:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    sys.stderr.write("\\nDOMAINFT-REJECT " + type(exc).__name__ + ": " + msg + "\\n")
    sys.exit(1)
"""


def deep_check(engine: Engine, config: dict[str, Any], file: str, timeout: float = 300) -> None:
    """Run the engine's own config validator in its venv; one-line EngineError on rejection."""
    venv = require_engine(engine.name)
    body = "\n".join("    " + ln for ln in engine.deep_check_code.splitlines())
    done = process.run([str(venv / "bin" / "python"), "-c", _WRAP.format(body=body)], input_text=json.dumps(config),
                       env=process.clean_env(Path.cwd(), venv), log_path=None, timeout=timeout)
    if done.returncode != 0:
        raise EngineError(f"{engine.name} rejects the config: {last_error_line(done.tail)}", where=file)


def last_error_line(output: list[str]) -> str:
    lines = [ln.strip() for ln in output if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("DOMAINFT-REJECT "):
            return ln.removeprefix("DOMAINFT-REJECT ")[:400]
    for ln in reversed(lines):
        if "Error" in ln or ln.startswith(("unknown key", "ValueError", "AssertionError")):
            return ln[:400]
    return (lines[-1] if lines else "no output")[:400]


def tokenizer_special_tokens(model_dir: Path) -> set[str] | None:
    """Added/special tokens of a local tokenizer (tokenizer.json, else tokenizer_config.json); None if unknown."""
    tokens: set[str] = set()
    tok_json = model_dir / "tokenizer.json"
    tok_cfg = model_dir / "tokenizer_config.json"
    if tok_json.exists():
        tokens |= {t["content"] for t in json.loads(tok_json.read_text(encoding="utf-8")).get("added_tokens", [])}
    if tok_cfg.exists():
        tokens |= {t["content"] for t in json.loads(tok_cfg.read_text(encoding="utf-8"))
                   .get("added_tokens_decoder", {}).values()}
    return tokens or None


# A turn marker in a template's text: <|im_start|>, <start_of_turn>, <｜User｜>, [INST], [gMASK] ("…" is the content).
_MARKER = re.compile(r"<[^<>\s…]{1,40}>|\[/?[A-Za-z_]{2,20}\]")


def markers(texts: list[str]) -> list[str]:
    """The turn markers in a template's text, in order of first appearance."""
    return list(dict.fromkeys(m for text in texts for m in _MARKER.findall(text)))


def engine_template_text(plan: Plan) -> list[str]:
    """The text the engine writes around turns for this recipe (LLaMA-Factory's template, Axolotl's alpaca
    format; none where the tokenizer's own template formats the data), plus the stop tokens of the chat-template
    family used by eval, chat and the Modelfile."""
    fmt = chat_format(plan.recipe.model.chat_template)
    return get_engine(plan.engine).written_template_text(plan) + list(fmt.stop if fmt else ())


def tokenizer_own_template(model_dir: Path) -> str:
    """The tokenizer's own chat template text (tokenizer_config.json, or chat_template.jinja beside it)."""
    text = ""
    config = model_dir / "tokenizer_config.json"
    if config.exists():
        value = json.loads(config.read_text(encoding="utf-8")).get("chat_template") or ""
        text += value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        text += jinja.read_text(encoding="utf-8")
    return text


def missing_markers(texts: list[str], tokens: set[str], own_template: str) -> list[str]:
    """Markers the tokenizer has neither as a special token nor in its own chat template."""
    return [m for m in markers(texts) if m not in tokens and m not in own_template]


def check_chat_template(plan: Plan) -> None:
    """The chat template must write only the turn markup the model's tokenizer knows (as special tokens, or in its
    own chat template): a mismatch trains on markers the model has never seen and breaks inference. Checked for
    every engine template, when the model is a local folder."""
    model_dir = Path(plan.model_path)
    if not model_dir.is_dir():
        return  # a hub model not pulled yet: `validate` and `run` say so (preflight.notes)
    tokens = tokenizer_special_tokens(model_dir) or set()
    own = tokenizer_own_template(model_dir)
    if not tokens and not own:
        return
    missing = missing_markers(engine_template_text(plan), tokens, own)
    if not missing:
        return
    engine = get_engine(plan.engine)
    template = engine.template_name(plan)
    fits = [name for name, texts in engine.chat_templates().items()
            if markers(texts) and not missing_markers(texts, tokens, own)]
    model = plan.recipe.model.base if plan.is_hub else model_dir.name  # a pulled snapshot's folder is its commit
    fits.sort(key=lambda name: name.split("_")[0] not in model.lower())  # the model's own family first
    raise RecipeError(
        f"chat template '{template}' does not match the tokenizer of {model}: it writes {missing[0]}, "
        "which that tokenizer has neither as a special token nor in its own chat template",
        where="model.chat_template",
        hint=f"templates that fit: {', '.join(fits[:6])}" if fits else None,
    )


# ------------------------------------------------------------------ what training.cutoff_len cuts

def length_report(plan: Plan) -> str | None:
    """How many training examples are longer than training.cutoff_len in the model's own tokens, and what the
    engines do with them; None when nothing is cut, or the data or the tokenizer is not here yet (alpaca data;
    the text is formatted with the chat template's own turns, so the count is the engine's)."""
    r = plan.recipe
    tokenizer_file = Path(plan.model_path) / "tokenizer.json"
    files = [p for p in plan.train_files if p.is_file()]
    if r.dataset.format != "alpaca" or not tokenizer_file.is_file() or not files:
        return None
    fmt = alpaca_formats().get(r.model.chat_template) or {
        "system_format": "{system}\n", "format": "{instruction}\n{input}\n", "no_input_format": "{instruction}\n",
        "default_system": ""}

    cols = r.dataset.column_map()
    prompts, answers = [], []
    for path in files:
        for rec in sample_records(path, limit=None):
            if instructions(r):  # the system prompt opens the user turn, as in the folder's copy
                rec = fold_record(rec, instructions(r), "alpaca", cols, {})
            system = str(rec.get(cols.get("system", ""), "") or system_turn(r) or fmt["default_system"])
            query = str(rec.get(cols["query"], "") or "")
            turn = fmt["format"] if query else fmt["no_input_format"]
            prompts.append((fmt["system_format"].format(system=system) if system else "")
                           + turn.format(instruction=str(rec.get(cols["prompt"], "")), input=query))
            answers.append(str(rec.get(cols["response"], "")))
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    prompt_lens = [len(e.ids) for e in tokenizer.encode_batch(prompts, add_special_tokens=False)]
    answer_lens = [len(e.ids) + 1 for e in tokenizer.encode_batch(answers, add_special_tokens=False)]  # + EOS
    limit = r.training.cutoff_len
    lengths = [p + a for p, a in zip(prompt_lens, answer_lens)]
    cut = sum(n > limit for n in lengths)
    if not cut:
        return None
    text = (f"{cut} of {len(lengths)} training examples are longer than training.cutoff_len {limit} tokens "
            f"(longest {max(lengths)}): {plan.engine} cuts them to {limit}, so the end of those answers is not learned")
    full_prompt = sum(p >= limit for p in prompt_lens)
    if full_prompt:
        text += (f"; in {full_prompt} the prompt alone fills the limit, leaving no answer to learn "
                 "(LLaMA-Factory keeps part of it, Axolotl none)")
    return text
