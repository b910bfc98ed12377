"""One test per static error: each is one line naming the file or key, with a did-you-mean, in well under 1 s."""

from __future__ import annotations

import json

import pytest

from domainft.engines import NAMES
from domainft.render import render_checked as validate
from domainft.errors import DataError, RecipeError, UserError


def _error(plan) -> UserError:
    with pytest.raises(UserError) as info:
        validate(plan)
    return info.value


@pytest.mark.parametrize("engine,key,meant", [
    ("llamafactory", "lora_rnak", "lora_rank"),
    ("axolotl", "lora_dropuot", "lora_dropout"),
])
def test_misspelt_override_key(plan_for, engine, key, meant):
    err = _error(plan_for(engine, engine_overrides={key: 4}))
    assert isinstance(err, RecipeError)
    assert err.where == f"engine_overrides.{key}" and f"did you mean '{meant}'" in err.one_line()


@pytest.mark.parametrize("engine", NAMES)
def test_wrong_column_map_names_file_role_and_real_column(plan_for, engine):
    err = _error(plan_for(engine, dataset={"columns": {"response": "ouput"}}))
    assert isinstance(err, DataError)
    line = err.one_line()
    assert "demo_qa.jsonl" in line and "'ouput'" in line and "'response'" in line
    assert "did you mean 'output'?" in line


def test_default_column_missing_from_file(plan_for, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    err = _error(plan_for("llamafactory", dataset={"files": [str(data)]}))
    assert "no column 'instruction' for role 'prompt'" in err.one_line() and "columns are answer, question" in err.one_line()


def test_sharegpt_tag_mismatch(plan_for, sharegpt_file):
    err = _error(plan_for("llamafactory", dataset={"files": [str(sharegpt_file)], "format": "sharegpt",
                                                    "columns": {"messages": "conversations"}}))
    assert "no field 'role'" in err.one_line() and "chats.json" in err.one_line()


@pytest.mark.parametrize("engine", NAMES)
def test_missing_file(plan_for, tmp_path, engine):
    missing = tmp_path / "nope.jsonl"
    err = _error(plan_for(engine, dataset={"files": [str(missing)]}))
    assert isinstance(err, DataError) and err.where == str(missing) and "not found" in err.message


def test_template_llamafactory_lacks(plan_for):
    err = _error(plan_for("llamafactory", model={"chat_template": "smolm2"}))
    assert err.where == "model.chat_template" and "did you mean 'smollm2'?" in err.one_line()


def test_template_axolotl_has_no_alpaca_format_for(plan_for):
    err = _error(plan_for("axolotl", model={"chat_template": "mistral"}))
    assert err.where == "model.chat_template" and "alpaca_formats.yaml" in err.one_line()


def test_bad_json_line_is_named(plan_for, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": \n')
    err = _error(plan_for("llamafactory", dataset={"files": [str(data)]}))
    assert err.where == f"{data}:2"


_HEAVY = ("torch", "transformers", "datasets", "peft", "lm_eval", "llama_cpp", "accelerate")


@pytest.mark.parametrize("engine", NAMES)
def test_static_validation_loads_no_ml_stack(engine, tmp_path):
    """Why `domainft validate` answers in well under a second: it imports none of the ML stack (timings live in
    benchmarks/validate_vs_engine.py, never in a test)."""
    import subprocess
    import sys

    from helpers import REPO

    code = (
        "import sys\n"
        "from domainft.cli import main\n"
        f"sys.argv = ['domainft', 'validate', {str(REPO / 'recipes' / 'demo-coal-smollm2.yaml')!r}, '-e', {engine!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {_HEAVY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


@pytest.mark.parametrize("engine", NAMES)
def test_a_misspelt_engine_key_is_refused_before_the_schema_and_templates_load(engine, tmp_path):
    """The cheapest check first: the recipe file's engine_overrides against the engine's known keys, before
    pydantic (the recipe schema) or Jinja (rendering) is imported (timings: benchmarks/validate_vs_engine.py)."""
    import subprocess
    import sys

    import yaml
    from helpers import DATA, tiny_recipe_data

    from domainft.engines.checks import check_engine_keys

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_data("t", engine, [DATA / "coal" / "demo_qa.jsonl"], max_steps=1, save_steps=1,
                                                      engine_overrides={"lerning_rate": 1})))
    code = (
        "import sys\n"
        "from domainft.cli import main\n"
        f"sys.argv = ['domainft', 'validate', {str(recipe)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 2, exc.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'jinja2', 'torch'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    assert "error: engine_overrides.lerning_rate:" in proc.stderr
    # malformed data is left to the schema's own one-line error
    check_engine_keys({"engine": "no-such-engine", "engine_overrides": {"x": 1}})
    check_engine_keys({"engine": engine, "engine_overrides": ["not", "a", "mapping"]})


def test_validate_says_what_cutoff_len_cuts(plan_for, cli, tmp_path):
    """Counted in the model's tokens with the chat template's turns; the CLI prints it as a note."""
    from domainft.engines.checks import length_report

    from helpers import DATA

    assert length_report(plan_for("axolotl", training={"cutoff_len": 4096})) is None
    note = length_report(plan_for("axolotl", training={"cutoff_len": 100}))
    assert note.startswith("24 of 24 training examples are longer than training.cutoff_len 100 tokens"), note
    note = length_report(plan_for("llamafactory", training={"cutoff_len": 20}))
    assert "in 24 the prompt alone fills the limit" in note
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nmodel: {{base: embedded:tiny-random-llama}}\n"
                      f"dataset: {{files: [{DATA / 'coal' / 'demo_qa.jsonl'}]}}\ntraining: {{cutoff_len: 100}}\n")
    result = cli("validate", recipe)
    assert result.code == 0 and "note: 24 of 24 training examples" in result.stderr, result


def test_cutoff_len_counts_the_system_prompt_where_it_goes(plan_for):
    """model.system_prompt_in user: the prompt opens the user turn (and the system turn is the template's default):
    the count is of what the engine trains on."""
    from domainft.engines.checks import length_report

    def longest(**model):
        note = length_report(plan_for("llamafactory", model={"system_prompt": "规" * 300, **model},
                                      training={"cutoff_len": 16}))
        return int(note.split("(longest ")[1].split(")")[0])

    system, user = longest(), longest(system_prompt_in="user")
    default = longest(system_prompt="")  # SmolLM2's default system turn instead of the prompt
    assert system > default and user > system  # in the user turn: the prompt, a blank line, and the default turn too
    assert longest(system_prompt="", system_prompt_in="user") == default
