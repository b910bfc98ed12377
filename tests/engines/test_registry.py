"""The engine registry (domainft.engine_names) is a leaf, and adding an engine is one folder plus one name: a
throwaway engine, its module and its templates in a temp folder, renders a folder through the normal render path."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from domainft import engine_names
from domainft.engines import get_engine
from domainft.engines.folder import README, write_folder
from domainft.plan import make_plan
from domainft.render import render, render_checked, render_inputs
from domainft.resources import folder
from domainft.templating import environment, template_path

ENGINE_MODULE = '''
from domainft import templating as R
from domainft.engines.base import Engine, Readme
from domainft.engines.venv import Spec


class Throwaway(Engine):
    name = "throwaway"
    label = "Throwaway"
    config_file = "throwaway.yaml"
    venv = Spec()
    run_folder_keys = ("output_dir",)
    deep_check_code = ""
    descriptions = {"throwaway.yaml": "the throwaway config"}

    def config_files(self, plan):
        r = plan.recipe
        return {self.config_file: R.render_template(
            "throwaway/throwaway.yaml.j2", header=R.header(r.name, plan.recipe_hash), overrides=r.engine_overrides,
            v={"model": plan.model_path, "learning_rate": float(r.training.learning_rate)})}

    def readme(self, plan):
        return Readme(model_key="`model` in `throwaway.yaml`", install="nothing",
                      steps=[("Train", ["throwaway train throwaway.yaml"])])

    def check_recipe(self, plan):
        pass

    def check_files(self, plan, files):
        assert set(self.config(files)) == {"model", "learning_rate"}

    def config(self, files):
        return R.parse_back(self.config_file, files[self.config_file])

    def train_launch(self, plan, resume_from=None):
        raise NotImplementedError

    def run_folder_args(self, plan, resume_from=None):
        return []

    def cluster_command(self, plan):
        return "throwaway train throwaway.yaml"

    def merge_launch(self, plan, out_dir):
        raise NotImplementedError

    def hand_command(self):
        return "throwaway train throwaway.yaml"

    def parse_progress(self, line):
        return None

    def chat_templates(self):
        return {}


ENGINE = Throwaway
'''

TEMPLATE = '''{{ header }}{% from "_shared/kv.j2" import kv with context %}
{{ kv("model", v.model) }}{{ kv("learning_rate", v.learning_rate) }}'''


def test_registry_imports_nothing_of_domainft():
    """The recipe imports the registry: it must not import the engines package (or anything else of domainft)."""
    code = ("import sys, domainft.engine_names, domainft.recipe\n"
            "print(sorted(m for m in sys.modules if m.startswith('domainft.engines')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    tree = ast.parse(Path(engine_names.__file__).read_text(encoding="utf-8"))
    imported = [n.module or "." if isinstance(n, ast.ImportFrom) and not n.level else "." * (n.level or 0)
                for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith((".", "domainft"))], imported


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    home = tmp_path / "throwaway_pkg"
    (home / "templates" / "throwaway").mkdir(parents=True)
    (home / "throwaway_engine.py").write_text(textwrap.dedent(ENGINE_MODULE), encoding="utf-8")
    (home / "templates" / "throwaway" / "throwaway.yaml.j2").write_text(TEMPLATE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(home))
    engine_names.register("throwaway", "throwaway_engine", templates=home / "templates")
    yield home
    engine_names.unregister("throwaway")
    sys.modules.pop("throwaway_engine", None)


def test_a_throwaway_engine_renders_through_the_normal_path(throwaway, plan_for, tmp_path):
    base = plan_for("llamafactory")
    plan = make_plan(base.recipe, engine="throwaway", run_dir=tmp_path / "run")
    assert get_engine("throwaway").label == "Throwaway"
    files = render_checked(plan)
    assert set(files) == {"throwaway.yaml", README}
    config = yaml.safe_load(files["throwaway.yaml"])
    assert config == {"model": plan.model_path, "learning_rate": float(plan.recipe.training.learning_rate)}
    assert "- `throwaway.yaml`: the throwaway config" in files[README]
    assert "throwaway train throwaway.yaml" in files[README]
    assert render(plan) == files  # pure: the same again
    written = write_folder(plan, files, plan.render_dir)
    assert plan.render_dir / "throwaway.yaml" in written
    # the render stage's inputs: its own template (outside the package), the macro it imports, the shared formats
    inputs = render_inputs(plan)
    assert throwaway / "templates" / "throwaway" / "throwaway.yaml.j2" in inputs
    assert folder("templates") / "_shared" / "kv.j2" in inputs
    assert folder("templates") / "_shared" / "alpaca_formats.yaml" in inputs


def test_an_unknown_engine_is_refused():
    from domainft.errors import EngineError

    with pytest.raises(EngineError, match="unknown engine 'nope'"):
        get_engine("nope")


@pytest.mark.parametrize("variant", [{}, {"distributed": {"deepspeed": 3, "launcher": "slurm", "nnodes": 2}},
                                     {"method": {"kind": "full"}}])
@pytest.mark.parametrize("engine", engine_names.NAMES)
def test_render_inputs_hold_every_template_jinja_loads(engine, variant, plan_for, monkeypatch):
    """The render stage's template inputs are what rendering reads: every template Jinja loads while rendering (the
    macros they import included) is one of them, and so are the alpaca formats every engine reads."""
    plan = plan_for(engine, **variant)
    env = environment()
    loaded: list[str] = []
    get_template = env.get_template

    def recording(name, *args, **kwargs):
        loaded.append(name if isinstance(name, str) else name.name)
        return get_template(name, *args, **kwargs)

    monkeypatch.setattr(env, "get_template", recording)
    render(plan)
    inputs = set(render_inputs(plan))
    assert "_shared/kv.j2" in loaded
    assert {template_path(name) for name in loaded} <= inputs
    assert folder("templates") / "_shared" / "alpaca_formats.yaml" in inputs
