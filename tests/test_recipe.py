"""The recipe schema: every shipped recipe loads; bad input is one precise line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from domainft.errors import RecipeError
from domainft.recipe import Recipe, load_recipe, recipe_from_dict

from helpers import DATA, RECIPES

SHIPPED = sorted(RECIPES.rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads(path: Path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    for file in recipe.dataset.files:
        assert recipe.resolve(file).exists(), file


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


MINIMAL = f"""\
name: t
dataset:
  files: [{DATA / 'coal' / 'demo_qa.jsonl'}]
"""


def test_minimal_recipe_gets_schema_defaults(tmp_path):
    recipe = load_recipe(_write(tmp_path, MINIMAL))
    assert recipe.engine == "llamafactory"
    assert recipe.model.base == "embedded:smollm2"
    assert recipe.method.kind == "lora"


def test_misspelt_key_names_file_line_and_nearest(tmp_path):
    path = _write(tmp_path, MINIMAL + "training:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    line = info.value.one_line()
    assert f"{path}:5" in line and "training.learning_rat" in line and "learning_rate" in line


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = _write(tmp_path, "name: t\ntraining: [unclosed\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert f"{path}:3:1" in info.value.one_line() or f"{path}:2" in info.value.one_line()


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("training:\n  learning_rate: -1.0\n", "training.learning_rate"),
        ("method:\n  rank: 0\n", "method.rank"),
        ("method:\n  alpha: sixteen\n", "method.alpha"),
        ("method:\n  kind: lorra\n", "did you mean 'lora'"),
        ("engine: axolotll\n", "did you mean 'axolotl'"),
        ("method:\n  target_modules: [q_prj]\n", "did you mean 'q_proj'"),
        ("model:\n  base: embedded:smollm\n", "embedded:smollm2"),
        ("training:\n  lr: 1.0e-4\n", "renamed to 'training.learning_rate'"),
        ("dataset:\n  files: [x.jsonl]\n  columns: {promt: q}\n", "did you mean 'prompt'"),
    ],
)
def test_bad_values_are_one_precise_line(tmp_path, extra, needle):
    text = MINIMAL if not extra.startswith("dataset:") else "name: t\n"
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, text + extra))
    line = info.value.one_line()
    assert needle in line, line
    assert "\n" not in line


def test_overrides_apply_before_validation(tmp_path):
    recipe = load_recipe(_write(tmp_path, MINIMAL), ["training.max_steps=7", "engine=axolotl"])
    assert recipe.training.max_steps == 7 and recipe.engine == "axolotl"
    with pytest.raises(RecipeError, match="training.max_stepz"):
        load_recipe(_write(tmp_path, MINIMAL), ["training.max_stepz=7"])


def test_yaml_1_1_float_strings_are_accepted(tmp_path):
    # PyYAML reads 1e-4 as a string; the schema still takes it as a float.
    recipe = load_recipe(_write(tmp_path, MINIMAL + "training:\n  learning_rate: 1e-4\n"))
    assert recipe.training.learning_rate == pytest.approx(1e-4)


def test_hash_ignores_key_order_and_comments():
    files = [str(DATA / "coal" / "demo_qa.jsonl")]
    a = recipe_from_dict({"name": "t", "dataset": {"files": files}, "training": {"seed": 1, "epochs": 2}})
    b = recipe_from_dict({"training": {"epochs": 2, "seed": 1}, "dataset": {"files": files}, "name": "t"})
    c = recipe_from_dict({"name": "t", "dataset": {"files": files}, "training": {"seed": 2, "epochs": 2}})
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_recipe_needs_training_data():
    with pytest.raises(RecipeError, match="no training data"):
        recipe_from_dict({"name": "t"})


def test_json_schema_forbids_unknown_keys():
    schema = Recipe.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["TrainingConfig"]["additionalProperties"] is False


def test_recipe_reference_in_readme_is_generated_from_the_schema():
    import subprocess
    import sys

    from helpers import REPO

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_recipe_reference.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
