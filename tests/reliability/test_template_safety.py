"""Template safety: recipe values reach Jinja only as data, and rendered files cannot land outside the run folder.

Server-side template injection payloads and YAML/JSON breakers go into every string field of a recipe. For each
engine's files, the DeepSpeed JSON and the Ollama Modelfile, the output must parse back (with the parser its
reader uses) and hold the payload verbatim as data, or the value is refused with a one-line UserError.
Nothing may run: a payload that would `touch pwned` leaves no such file.
"""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from helpers import DATA, assert_one_line_error, run_cli
from jinja2 import TemplateError
from pydantic import BaseModel

from domainft.datagen.prompts import load_prompts
from domainft.engines import get_engine
from domainft.errors import UserError
from domainft.export import render_modelfile
from domainft.extract import Chunk
from domainft.pipeline import STAGES
from domainft.plan import make_plan
from domainft.recipe import Recipe, recipe_from_dict
from domainft.render import render
from domainft.render import render_checked as validate
from domainft.templating import environment, write_tree

CANARY = "pwned"  # every code-running payload below would create this file in the current folder
PAYLOADS = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "import": "{% import os %}",
    "popen": "{{ cycler.__init__.__globals__.os.popen('touch pwned').read() }}",
    "self-globals": "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch pwned') }}",
    "raw": "{% raw %}",
    "expr": "{{ 7*7 }}{{",
    "yaml-seq": "a: b\n- c",
    "quote-brace": '"}',
    "newlines": "x\n\ny\r\nz\n",
    "doc-marker": "---",
    "yaml-tag": "!!python/object/apply:os.system ['touch pwned']",
    "yaml-flow": "&a *a [] {} | > # % @ `",
    "omegaconf": "${oc.env:HOME} ${",
    "shell": "$(touch pwned); `touch pwned` && rm -rf ~",
    "backslashes": "C:\\new\\table \\u0041 \\x41 '\"",
    "unicode": "中文 \u2028\u2029\x85\x7f\x9f\ufeff\t😀 é",
}
# Keys the schema restricts to names it knows: any payload there must be refused, never rendered.
REFUSED_FIELDS = ("name", "domain", "model.chat_template", "method.target_modules", "dataset.columns<key>",
                  "dataset.tags<key>", "engine_overrides<key>", "model.revision", "distributed.slurm.partition",
                  "distributed.slurm.account", "distributed.slurm.time_limit", "distributed.slurm.sbatch_lines",
                  # the name of an environment variable: a payload there (or a key pasted there) is refused unrepeated
                  "datagen.api_key_env", "datagen.curate.api_key_env", "eval.judge.api_key_env")
# Free-text fields and where each one is exercised in this file.
COVERED = {
    "description": "recipe_with", "model.base": "recipe_with (payload-named model folder)",
    "model.system_prompt": "recipe_with + Modelfile", "dataset.files": "recipe_with (payload-named file)",
    "dataset.columns": "recipe_with (payload-named columns)", "dataset.tags": "test_sharegpt_tags",
    "engine_overrides": "recipe_with (free-text option)", "run_dir": "recipe_with (payload-named run folder)",
    "distributed.master_addr": "recipe_with", "eval.tasks": "recipe_with", "extract.inputs": "test_datagen",
    "datagen.prompts": "test_datagen", "datagen.model": "test_datagen", "datagen.base_url": "test_datagen",
    **{f"{section}.{key}": "test_judges" for section in ("datagen.curate", "eval.judge")
       for key in ("model", "base_url", "rubric")},
}
# A free-text option each engine knows (its value is only a label).
FREE_OPTION = {"llamafactory": "run_name", "axolotl": "mlflow_run_name"}


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert not list(tmp_path.rglob(CANARY)), "a payload ran code"


def _string_fields(model: type[BaseModel] = Recipe, prefix: str = "") -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        parts = (field.annotation, *typing.get_args(field.annotation))
        sub = next((p for p in parts if isinstance(p, type) and issubclass(p, BaseModel)), None)
        if sub is not None:
            found |= _string_fields(sub, f"{prefix}{name}.")
        elif "str" in str(field.annotation) or "Any" in str(field.annotation):
            found.add(prefix + name)
    return found


def test_every_string_field_is_covered():
    """A new string field in the schema fails here until this file puts payloads into it."""
    refused = {f.split("<")[0] for f in REFUSED_FIELDS}
    assert _string_fields() <= set(COVERED) | refused


def fs_name(payload: str) -> str:
    """The payload as one file name: everything but '/' is allowed in a Linux file name."""
    return payload.replace("/", "|")


def _model_named(tmp: Path, payload: str, tiny_model: Path) -> Path:
    """The tiny model, in a folder whose name is the payload (files linked, not copied)."""
    folder = tmp / f"model {fs_name(payload)}"
    folder.mkdir()
    for item in tiny_model.iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def recipe_with(tmp: Path, payload: str, engine: str, tiny_model: Path, **extra) -> Recipe:
    q, a = f"q {payload}", f"a {payload}"
    data = tmp / f"data {fs_name(payload)}.jsonl"
    data.write_text("".join(json.dumps({q: f"问题{i} {payload}", "input": "", a: f"答案{i}"}, ensure_ascii=False) + "\n"
                            for i in range(3)), encoding="utf-8")
    system = payload.replace('"""', "")  # the Modelfile refuses \"\"\" (tested apart)
    return recipe_from_dict({
        "name": "t-safe", "engine": engine, "description": payload,
        "model": {"base": str(_model_named(tmp, payload, tiny_model)), "chat_template": "smollm2",
                  "system_prompt": system},
        "dataset": {"files": [str(data)], "columns": {"prompt": q, "response": a}},
        "training": {"max_steps": 2, "precision": "fp32"},
        "engine_overrides": {FREE_OPTION[engine]: payload},
        "distributed": {"master_addr": payload},
        "eval": {"tasks": [payload]},
        "run_dir": str(tmp / f"run {fs_name(payload)}"),
        **extra,
    })


def _under(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
@pytest.mark.parametrize("key", list(PAYLOADS))
def test_engine_files_hold_payloads_as_data(engine, key, tmp_path, tiny_model):
    payload = PAYLOADS[key]
    recipe = recipe_with(tmp_path, payload, engine, tiny_model, distributed={"deepspeed": 2, "master_addr": payload})
    plan = make_plan(recipe)
    try:
        files = validate(plan)  # render + static checks: a value may be refused here, as one line
    except UserError as exc:
        assert "\n" not in exc.one_line() and exc.where, exc.one_line()
        assert "${" in payload and engine == "llamafactory", f"refused unexpectedly: {exc.one_line()}"
        return
    parsed = {rel: (json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)) for rel, text in files.items()
              if rel != "README.md"}
    system = recipe.model.system_prompt
    data_file = recipe.resolve(recipe.dataset.files[0])
    if engine == "llamafactory":
        cfg, info = parsed["train.yaml"], parsed["dataset_info.json"]
        assert cfg["default_system"] == system and cfg[FREE_OPTION[engine]] == payload
        assert cfg["model_name_or_path"] == plan.model_path and fs_name(payload) in plan.model_path
        (entry,) = info.values()
        assert entry["file_name"] == f"data/{data_file.name}"
        assert entry["columns"] == {"prompt": f"q {payload}", "query": "input", "response": f"a {payload}"}
        written = [cfg["output_dir"], cfg["dataset_dir"], cfg["deepspeed"], parsed["merge.yaml"]["export_dir"]]
    else:
        cfg = parsed["axolotl.yml"]
        (entry,) = cfg["datasets"]
        assert entry["path"] == f"data/{data_file.name}" and entry["type"]["system_prompt"] == system
        assert entry["type"]["field_instruction"] == f"q {payload}" and entry["type"]["field_output"] == f"a {payload}"
        assert cfg["base_model"] == plan.model_path and cfg[FREE_OPTION[engine]] == payload
        written = [cfg["output_dir"], cfg["dataset_prepared_path"], cfg["deepspeed"]]
    # Everything the engine writes by hand lies inside the rendered folder; run by domainft, inside the run folder.
    assert all(not Path(p).is_absolute() and _under(plan.render_dir / p, plan.render_dir) for p in written), written
    launch = get_engine(engine).train_launch(plan)
    # LLaMA-Factory's `key=value` holds a YAML scalar (OmegaConf reads it so); Axolotl's `--key=value` a raw string.
    moved = [yaml.safe_load(a.split("=", 1)[1]) if engine == "llamafactory" else a.split("=", 1)[1]
             for a in launch.argv if a.split("=")[0].lstrip("-") in ("output_dir", "output-dir", "dataset-prepared-path")]
    assert moved and all(_under(p, plan.run_dir) for p in moved), launch.argv
    # The README's commands carry recipe values shell-quoted: bash parses each into one word, the value intact.
    import shlex

    from helpers import bash_blocks

    train = next(block for block in bash_blocks(files["README.md"]) if " train " in block)
    if engine == "llamafactory":  # DeepSpeed goes through torchrun, whose rendezvous the command sets
        assert f"MASTER_ADDR={payload}" in shlex.split(train), train
    # No recipe value reaches the DeepSpeed JSON: it is the same as for a plain recipe.
    assert parsed["ds_zero2.json"]["zero_optimization"]["stage"] == 2
    plain = make_plan(recipe.with_updates(description="", run_dir=str(tmp_path / "plain")))
    assert files["ds_zero2.json"] == render(plain)["ds_zero2.json"]
    if key == "expr":  # "{{ 7*7 }}" stays text, never 49
        assert "49" not in json.dumps(parsed, ensure_ascii=False).replace(str(tmp_path), "")
    # The files land in the run folder, through the one writer that refuses escapes.
    for path in write_tree(files, plan.render_dir):
        assert _under(path, plan.run_dir)


_OMEGACONF_READ = """
import json, sys
from omegaconf import OmegaConf
out = []
for train, merge, arg in json.load(sys.stdin):
    # What llamafactory.hparams.parser.read_args does with `llamafactory-cli train|export FILE key=value`.
    load = lambda f, cli: OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(f), OmegaConf.from_cli(cli)))
    out.append([load(train, []), load(merge, [arg])])
print(json.dumps(out))
"""


def test_llamafactory_reads_rendered_files_with_its_own_loader(tmp_path, tiny_model):
    """LLaMA-Factory reads YAML through OmegaConf (and `key=value` through its CLI grammar), not PyYAML."""
    from domainft.engines.venv import require_engine
    from domainft.errors import EngineError

    try:
        python = require_engine("llamafactory") / "bin" / "python"
    except EngineError:
        pytest.skip("LLaMA-Factory venv not installed")
    import subprocess

    jobs, expected = [], []
    for key, payload in PAYLOADS.items():
        folder = tmp_path / key
        folder.mkdir()
        plan = make_plan(recipe_with(folder, payload, "llamafactory", tiny_model))
        try:
            files = validate(plan)
        except UserError:
            assert "${" in payload
            continue
        write_tree(files, plan.render_dir)
        merged = plan.export_dir / ".merged.x"
        arg = get_engine("llamafactory").merge_launch(plan, merged).argv[-1]
        jobs.append([str(plan.render_dir / "train.yaml"), str(plan.render_dir / "merge.yaml"), arg])
        expected.append([yaml.safe_load(files["train.yaml"]), {**yaml.safe_load(files["merge.yaml"]),
                                                               "export_dir": str(merged.resolve())}])
    done = subprocess.run([str(python), "-c", _OMEGACONF_READ], input=json.dumps(jobs), capture_output=True, check=False,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == expected


def _port_of_ollama_parser(text: str) -> list[tuple[str, str]]:
    """A line-for-line port of Ollama's parser/parser.go ParseFile: (command, value) pairs. Raises ValueError."""
    commands: list[tuple[str, str]] = []
    curr, buf, cmd = "nil", "", ""

    def unquote(s: str) -> tuple[str, bool]:
        if s.startswith('"""'):
            return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
        if s.startswith('"'):
            return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
        return s, True

    def next_state(r: str) -> tuple[str, str | None]:  # parseRuneForState
        space, newline, alpha = r in " \t", r in "\r\n", r.isascii() and r.isalpha()
        if curr == "nil":
            return ("comment", None) if r == "#" else ("nil", None) if space or newline else ("name", r)
        if curr == "name":
            if not (alpha or space):
                raise ValueError("invalid command")
            return ("value", None) if space else ("name", r)
        if curr == "value":
            return ("nil", r) if space or newline else ("value", r)
        if curr == "parameter":
            if not (alpha or r.isdigit() or r == "_" or space):
                raise ValueError("unexpected EOF")
            return ("value", None) if space else ("parameter", r)
        return ("nil", None) if newline else ("comment", None)

    for rune in text:
        nxt, r = next_state(rune)
        if nxt != curr:
            if curr == "name":
                name = buf.lower()
                if name not in {"from", "license", "template", "system", "adapter", "parameter", "message"}:
                    raise ValueError(f"invalid command {buf!r}")
                if name == "parameter":
                    nxt = "parameter"
                else:
                    cmd = "model" if name == "from" else name
            elif curr == "parameter":
                cmd = buf
            elif curr == "value":
                value, ok = unquote(buf.strip())
                if not ok or (r is not None and r in " \t"):
                    buf += r or ""
                    continue
                commands.append((cmd, value))
            buf, curr = "", nxt
        if r is not None and r.isprintable():  # Go's strconv.IsPrint: other characters are dropped
            buf += r
    if curr == "value":
        value, ok = unquote(buf.strip())
        if not ok:
            raise ValueError("unexpected EOF")
        commands.append((cmd, value))
    elif curr not in ("nil", "comment"):
        raise ValueError("unexpected EOF")
    return commands


def test_ollama_parser_port_reads_a_plain_modelfile():
    text = 'FROM ./m.gguf\n# note\nTEMPLATE """{{ .Prompt }}\n"""\nSYSTEM """a "b" c"""\nPARAMETER stop "<|im_end|>"\n'
    assert _port_of_ollama_parser(text) == [
        ("model", "./m.gguf"), ("template", "{{ .Prompt }}\n"), ("system", 'a "b" c'), ("stop", "<|im_end|>"),
    ]
    with pytest.raises(ValueError):
        _port_of_ollama_parser('FROM x\nSYSTEM """never closed\n')


@pytest.mark.parametrize("key", list(PAYLOADS))
def test_modelfile_holds_system_prompt_verbatim_or_refuses(key, tmp_path, tiny_model):
    payload = PAYLOADS[key]
    recipe = recipe_with(tmp_path, payload, "llamafactory", tiny_model)
    try:
        text = render_modelfile(recipe, "t-safe-q8_0.gguf")
    except UserError as exc:
        assert exc.where == "model.system_prompt" and "\n" not in exc.one_line()
        # Only what Ollama's parser would silently drop (it keeps printable runes, spaces, tabs and newlines).
        assert any(not c.isprintable() and c not in "\t\r\n" for c in payload), exc.one_line()
        return
    commands = _port_of_ollama_parser(text)
    assert ("system", payload) in commands
    assert ("model", "./t-safe-q8_0.gguf") in commands


@pytest.mark.parametrize("system", ['say """hi"""', 'x"""', "zero\u200bwidth", "nul\x00"])
def test_modelfile_refuses_what_ollama_cannot_hold(system, tmp_path, tiny_model):
    recipe = recipe_with(tmp_path, "x", "llamafactory", tiny_model)
    recipe = recipe.with_updates(model={"base": recipe.model.base, "chat_template": "smollm2", "system_prompt": system})
    with pytest.raises(UserError) as info:
        render_modelfile(recipe, "m.gguf")
    assert info.value.where == "model.system_prompt"


# ------------------------------------------------------------------ refused fields


def _base_dict(**changes) -> dict:
    data = {"name": "t", "dataset": {"files": [str(DATA / "coal" / "demo_qa.jsonl")]},
            "model": {"base": "embedded:tiny-random-llama", "chat_template": "smollm2"}}
    data.update(changes)
    return data


REFUSED = {
    "name": lambda p: _base_dict(name=p),
    "domain": lambda p: _base_dict(domain=p),
    "model.chat_template": lambda p: _base_dict(model={"base": "embedded:tiny-random-llama", "chat_template": p}),
    "method.target_modules": lambda p: _base_dict(method={"target_modules": [p]}),
    "dataset.columns<key>": lambda p: _base_dict(dataset={"files": [str(DATA / "coal" / "demo_qa.jsonl")],
                                                          "columns": {p: "instruction"}}),
    "dataset.tags<key>": lambda p: _base_dict(dataset={"files": [str(DATA / "coal" / "demo_qa.jsonl")],
                                                       "format": "sharegpt", "tags": {p: "x"}}),
    "engine_overrides<key>": lambda p: _base_dict(engine_overrides={p: 1}),
    "model.revision": lambda p: _base_dict(model={"base": "org/model", "chat_template": "smollm2", "revision": p}),
    **{f"distributed.slurm.{key}": (lambda key: lambda p: _base_dict(distributed={
        "launcher": "slurm", "slurm": {key: [p] if key == "sbatch_lines" else p}}))(key)
       for key in ("partition", "account", "time_limit", "sbatch_lines")},
    "datagen.api_key_env": lambda p: _base_dict(extract={"inputs": ["docs"]}, datagen={"api_key_env": p}),
    "datagen.curate.api_key_env": lambda p: _base_dict(extract={"inputs": ["docs"]}, datagen={"curate": {
        "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": p}}),
    "eval.judge.api_key_env": lambda p: _base_dict(eval={"judge": {"model": "m", "base_url": "http://127.0.0.1:9/v1",
                                                                   "api_key_env": p}}),
}
assert set(REFUSED) == set(REFUSED_FIELDS)


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
@pytest.mark.parametrize("field", list(REFUSED))
def test_restricted_fields_refuse_every_payload_in_one_line(field, engine):
    for payload in PAYLOADS.values():
        if payload == "---":
            continue  # a plain name (domain allows [a-z0-9_-]): inert, not a payload there
        with pytest.raises(UserError) as info:
            validate(make_plan(recipe_from_dict({**REFUSED[field](payload), "engine": engine})))
        line = info.value.one_line()
        assert "\n" not in line and info.value.where, line
        assert field.split("<")[0].split(".")[0] in line, line
        if field.endswith("api_key_env"):
            assert payload not in line, line  # never repeated: it may be a key


def test_sharegpt_tags_hold_payloads_as_data(tmp_path, tiny_model):
    payload = PAYLOADS["yaml-seq"] + PAYLOADS["mro"]
    chats = tmp_path / "chats.json"
    chats.write_text(json.dumps([{"conversations": [{"from": f"u{payload}", "value": "q"},
                                                    {"from": f"g{payload}", "value": "a"}]}] * 2))
    for engine in ("llamafactory", "axolotl"):
        recipe = recipe_from_dict(_base_dict(engine=engine, dataset={
            "files": [str(chats)], "format": "sharegpt", "columns": {"messages": "conversations"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": f"u{payload}",
                     "assistant_tag": f"g{payload}"}}))
        files = validate(make_plan(recipe, run_dir=tmp_path / engine))
        if engine == "llamafactory":
            (entry,) = json.loads(files["dataset_info.json"]).values()
            assert entry["tags"]["user_tag"] == f"u{payload}" and entry["tags"]["assistant_tag"] == f"g{payload}"
        else:
            (entry,) = yaml.safe_load(files["axolotl.yml"])["datasets"]
            assert entry["roles"] == {"user": [f"u{payload}"], "assistant": [f"g{payload}"], "system": ["system"]}


# ------------------------------------------------------------------ the CLI, end to end


def test_cli_renders_a_recipe_file_full_of_payloads(tmp_path, tiny_model):
    """Through a real YAML recipe file and `domainft render`: every value survives both YAML hops."""
    payload = "".join(v for k, v in PAYLOADS.items() if k != "omegaconf")
    recipe = recipe_with(tmp_path, "x", "axolotl", tiny_model)
    data = recipe.model_dump(mode="json", exclude_defaults=True)
    data["model"]["system_prompt"] = payload
    data["engine_overrides"] = {"mlflow_run_name": payload}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("render", path, "-o", out, cwd=tmp_path, timeout=120)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    cfg = yaml.safe_load((out / "axolotl.yml").read_text(encoding="utf-8"))
    assert cfg["datasets"][0]["type"]["system_prompt"] == payload and cfg["mlflow_run_name"] == payload


@pytest.mark.parametrize("field,value", [("name", "../escape"), ("name", "a/b"), ("name", "{{ 7*7 }}"),
                                         ("engine_overrides", {"output_dir": "/tmp/elsewhere"})])
def test_cli_refuses_in_one_line(field, value, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_base_dict(**{field: value})), encoding="utf-8")
    assert_one_line_error(run_cli("validate", path, cwd=tmp_path, timeout=120), field)


# ------------------------------------------------------------------ paths cannot escape the run folder


@pytest.mark.parametrize("rel", ["../x.yaml", "a/../../x.yaml", "/tmp/x.yaml", "link/x.yaml", "..", "a/../.."])
def test_write_tree_refuses_paths_outside_the_folder(rel, tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside)  # a symlink out of the folder is an escape too
    with pytest.raises(UserError, match="escapes the output folder"):
        write_tree({rel: "x: 1\n"}, dest)
    assert not list(outside.iterdir()) and not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
@pytest.mark.parametrize("key", ["output_dir", "dataset_dir", "export_dir", "logging_dir", "dataset_prepared_path"])
def test_engine_overrides_cannot_move_outputs_out_of_the_run_folder(engine, key, tmp_path):
    recipe = recipe_from_dict(_base_dict(engine=engine, engine_overrides={key: str(tmp_path / "elsewhere")}))
    with pytest.raises(UserError) as info:
        validate(make_plan(recipe, run_dir=tmp_path / "run"))
    assert info.value.where == f"engine_overrides.{key}"


@pytest.mark.parametrize("name", ["a..b", "x.-_", "A" * 80])
@pytest.mark.parametrize("run_dir", [None, "r/../elsewhere/{{ 7*7 }}", "~/../tmp-run"])
def test_every_stage_writes_inside_the_run_folder(name, run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = _base_dict(name=name, run_dir=run_dir, export={"quantizations": ["q8_0"], "lora_gguf": True})
    plan = make_plan(recipe_from_dict(data))
    root = plan.run_dir
    assert _under(root, tmp_path), root  # both a relative and a ~ run_dir resolve, then stay put
    fixed = [plan.extract_dir, plan.datagen_dir, plan.render_dir, plan.train_dir, plan.eval_dir, plan.export_dir]
    for stage in STAGES:
        for out in stage.outputs(plan):
            assert _under(out, root), (stage.name, out)
    for path in fixed:
        assert _under(path, root)
    for quant in ("f16", "q8_0", "lora-f16"):
        assert _under(plan.export_dir / f"{plan.recipe.name}-{quant}.gguf", plan.export_dir)


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/abs", "a\nb", "~", "-x", "", "a" * 81])
def test_recipe_names_that_could_escape_are_refused(name):
    with pytest.raises(UserError) as info:
        recipe_from_dict(_base_dict(name=name))
    assert "name" in info.value.one_line() and "\n" not in info.value.one_line()


# ------------------------------------------------------------------ the sandbox, and datagen's prompt templates


@pytest.mark.parametrize("key", ["mro", "import", "popen", "self-globals"])
def test_sandbox_blocks_payloads_even_as_template_source(key):
    """Defence in depth: were a value ever compiled as a template, the sandbox still runs nothing."""
    with pytest.raises(TemplateError):
        environment().from_string(PAYLOADS[key]).render()


@pytest.mark.parametrize("key", ["mro", "import", "popen", "self-globals", "expr"])
def test_prompt_file_with_injection_is_a_one_line_error(key, tmp_path):
    spec = yaml.safe_load((Path(__file__).parents[2] / "datagen" / "coal.yaml").read_text(encoding="utf-8"))
    spec["instruction"] = "{{ text }}\n" + PAYLOADS[key]
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_prompts(str(path))
    assert str(path) in info.value.one_line() and "\n" not in info.value.one_line()


def test_datagen_carries_payloads_as_data(tmp_path):
    """Document text, titles and file names, and the prompt file's own path, reach the teacher verbatim."""
    payload = PAYLOADS["popen"] + PAYLOADS["yaml-seq"] + PAYLOADS["raw"]
    prompts = tmp_path / f"prompts {PAYLOADS['expr']}.yaml"
    shutil.copy(Path(__file__).parents[2] / "datagen" / "coal.yaml", prompts)
    spec = load_prompts(str(prompts))
    chunk = Chunk.make(f"{payload}.txt", [payload], 0, f"第一条 {payload}", title=payload)
    text = spec.render(chunk, 3)
    assert text.count(payload) >= 3 and "49" not in text  # title, heading, text
    docs = tmp_path / f"docs {PAYLOADS['doc-marker']}"
    docs.mkdir()
    (docs / f"{PAYLOADS['quote-brace']}.txt").write_text(f"安全规定\n\n第一条 {payload}\n\n第二条 矿山企业必须遵守。\n",
                                                          encoding="utf-8")
    recipe = recipe_from_dict({
        "name": "t-dg", "extract": {"inputs": [str(docs)]},
        "datagen": {"provider": "extractive", "prompts": str(prompts), "model": payload,
                    "base_url": payload},
        "run_dir": str(tmp_path / f"run {PAYLOADS['newlines']}"),
    })
    from domainft.pipeline import run_pipeline

    plan = make_plan(recipe)
    run_pipeline(plan, only=["extract", "datagen"])
    pairs = [json.loads(line) for line in (plan.datagen_dir / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(payload in p["output"] for p in pairs)
    manifest = json.loads((plan.run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["recipe"]["datagen"]["model"] == payload


def test_judges_carry_payloads_as_data(tmp_path):
    """Judge settings keep payloads verbatim, and a pair, answer or source holding them reaches the judge as text:
    the rubric's template is rendered in the sandbox, its fields never are."""
    from domainft.judge import load_rubric

    payload = PAYLOADS["expr"] + PAYLOADS["popen"] + PAYLOADS["yaml-seq"] + PAYLOADS["raw"]
    judge = {"provider": "openai", "model": payload, "base_url": payload}
    for home, name, section, fields in (("datagen", "curate_rubric", "curate", ("question", "answer", "source", "title", "heading")),
                                         ("eval_tasks", "judge_rubric", "judge",
                                          ("question", "answer", "reference", "source"))):
        rubric_file = tmp_path / f"{fs_name(PAYLOADS['expr'])} {name}.yaml"
        shutil.copy(Path(__file__).parents[2] / home / f"{name}.yaml", rubric_file)
        rubric = load_rubric(str(rubric_file), home=home, base_dir=None, fields=fields, where=section)
        text = rubric.render({field: payload for field in fields})
        assert text.count(payload) >= 2 and "{{ 7*7 }}" in text and "\n49" not in text
        data = {"name": "t-judge", "datagen": {"provider": "extractive"}, "extract": {"inputs": [str(tmp_path)]}}
        target = data["datagen"] if section == "curate" else data.setdefault("eval", {})
        target[section] = {**judge, "rubric": str(rubric_file)}
        recipe = recipe_from_dict(data)
        got = recipe.datagen.curate if section == "curate" else recipe.eval.judge
        assert (got.model, got.base_url, got.rubric) == (payload, payload, str(rubric_file))
