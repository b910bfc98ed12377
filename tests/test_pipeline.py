"""Stage skipping and resume, on small stages that really write files (the engines are tested elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainft.errors import UserError
from domainft.lineage import lineage_tree, status_table
from domainft.manifest import Manifest
from domainft.pipeline import Stage, run_pipeline
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

from helpers import DATA


def _plan(tmp_path: Path, **training):
    recipe = recipe_from_dict({"name": "p", "dataset": {"files": [str(DATA / "coal" / "demo_qa.jsonl")]},
                               "training": {"seed": 1, **training}})
    return make_plan(recipe, run_dir=tmp_path / "run")


def _stages(calls: list[str], fail_in: set[str] | None = None) -> tuple[Stage, ...]:
    fail_in = fail_in if fail_in is not None else set()

    def first(plan):
        calls.append("first")
        (plan.run_dir / "a.txt").write_text(f"seed={plan.recipe.training.seed}\n")

    def second(plan):
        calls.append("second")
        if "second" in fail_in:
            raise UserError("boom", where="second")
        (plan.run_dir / "b.txt").write_text((plan.run_dir / "a.txt").read_text().upper())

    def third(plan):
        calls.append("third")
        (plan.run_dir / "c.txt").write_text((plan.run_dir / "b.txt").read_text() + f"lr={plan.recipe.training.learning_rate}")

    return (
        Stage("first", "", lambda p: True, lambda p: {"seed": p.recipe.training.seed}, lambda p: [],
              lambda p: [p.run_dir / "a.txt"], first),
        Stage("second", "", lambda p: True, lambda p: {}, lambda p: [p.run_dir / "a.txt"],
              lambda p: [p.run_dir / "b.txt"], second),
        Stage("third", "", lambda p: True, lambda p: {"lr": p.recipe.training.learning_rate},
              lambda p: [p.run_dir / "b.txt"], lambda p: [p.run_dir / "c.txt"], third),
    )


def test_rerun_with_nothing_changed_does_no_work(tmp_path):
    calls: list[str] = []
    plan = _plan(tmp_path)
    run_pipeline(plan, stages=_stages(calls))
    assert calls == ["first", "second", "third"]
    calls.clear()
    result = run_pipeline(plan, stages=_stages(calls))
    assert calls == [] and [o.action for o in result.outcomes] == ["skipped"] * 3


def test_changed_parameter_reruns_that_stage_and_what_follows(tmp_path):
    calls: list[str] = []
    run_pipeline(_plan(tmp_path), stages=_stages(calls))
    calls.clear()
    result = run_pipeline(_plan(tmp_path, seed=2), stages=_stages(calls))
    assert calls == ["first", "second", "third"]
    assert "parameters changed: seed" in result.outcomes[0].reason
    assert result.outcomes[1].reason == "input changed: a.txt"


def test_parameter_of_a_late_stage_reruns_only_it(tmp_path):
    calls: list[str] = []
    run_pipeline(_plan(tmp_path), stages=_stages(calls))
    calls.clear()
    run_pipeline(_plan(tmp_path, learning_rate=0.5), stages=_stages(calls))
    assert calls == ["third"]


def test_failed_stage_is_recorded_and_the_rerun_resumes_there(tmp_path):
    calls: list[str] = []
    plan = _plan(tmp_path)
    with pytest.raises(UserError):
        run_pipeline(plan, stages=_stages(calls, {"second"}))
    manifest = Manifest(plan.run_dir)
    assert manifest.stages["first"].status == "done"
    assert manifest.stages["second"].status == "failed" and "boom" in manifest.stages["second"].error
    calls.clear()
    run_pipeline(plan, stages=_stages(calls))
    assert calls == ["second", "third"]


def test_deleted_output_is_rebuilt(tmp_path):
    calls: list[str] = []
    plan = _plan(tmp_path)
    run_pipeline(plan, stages=_stages(calls))
    (plan.run_dir / "c.txt").unlink()
    calls.clear()
    run_pipeline(plan, stages=_stages(calls))
    assert calls == ["third"]


def test_from_only_skip_and_unknown_stage(tmp_path):
    calls: list[str] = []
    plan = _plan(tmp_path)
    run_pipeline(plan, stages=_stages(calls))
    calls.clear()
    run_pipeline(plan, from_stage="second", stages=_stages(calls))
    assert calls == ["second", "third"]
    calls.clear()
    run_pipeline(plan, only=["first"], stages=_stages(calls))
    assert calls == []  # --only restricts; it does not force an up-to-date stage
    (plan.run_dir / "a.txt").write_text("edited by hand\n")
    run_pipeline(plan, only=["first", "second"], stages=_stages(calls))
    assert calls == ["first"]  # rebuilt a.txt is byte-identical to what second read, so second stays done
    with pytest.raises(UserError) as info:
        run_pipeline(plan, skip=["thrid"], stages=_stages(calls))
    assert info.value.one_line() == "--skip: unknown stage 'thrid' (did you mean 'third'?)"


def test_manifest_links_outputs_to_inputs_and_params(tmp_path):
    plan = _plan(tmp_path)
    run_pipeline(plan, stages=_stages([]))
    data = json.loads((plan.run_dir / "manifest.json").read_text())
    assert data["recipe_hash"] == plan.recipe_hash
    assert set(data["stages"]["third"]["inputs"]) == {"b.txt"}
    assert data["stages"]["first"]["params"] == {"seed": 1}
    assert "domainft" in data["versions"]
    tree = lineage_tree(plan.run_dir / "c.txt")
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(tree)
    console.print(status_table(plan.run_dir))
    text = console.export_text()
    assert "made by stage third" in text and "made by stage first" in text and "matches the record" in text


def test_run_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("")
    with pytest.raises(UserError, match="run folder is a file"):
        run_pipeline(_plan(tmp_path), stages=_stages([]))


def test_dry_run_says_what_would_run_and_what_may_follow(tmp_path):
    calls: list[str] = []
    run_pipeline(_plan(tmp_path), stages=_stages(calls))
    calls.clear()
    result = run_pipeline(_plan(tmp_path, seed=2), dry_run=True, stages=_stages(calls))
    assert calls == []
    assert [(o.action, o.reason) for o in result.outcomes] == [
        ("would run", "parameters changed: seed"), ("may run", "if first changes its outputs"),
        ("may run", "if first changes its outputs")]


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl", "swift"])
def test_render_stage_reads_the_templates_its_templates_import(engine, tmp_path):
    """The macro file every engine template imports (templates/_shared/kv.j2) is one of the render stage's inputs, so
    editing it re-renders; found by Jinja's own parse of the engine's templates."""
    from domainft.pipeline import STAGES
    from domainft.resources import folder

    recipe = recipe_from_dict({"name": "t", "engine": engine, "dataset": {"files": [str(DATA / "coal" / "demo_qa.jsonl")]}})
    render = next(s for s in STAGES if s.name == "render")
    inputs = render.inputs(make_plan(recipe, run_dir=tmp_path))
    templates = folder("templates")
    assert templates / "_shared" / "kv.j2" in inputs
    assert {p for p in inputs if p.is_relative_to(templates / engine)} == {
        p for p in (templates / engine).iterdir() if p.is_file()}


@pytest.mark.parametrize("engine", ["llamafactory", "swift"])
def test_run_renders_the_folder_once(engine, tmp_path, monkeypatch):
    """`domainft run` renders the folder once: its preflight renders and checks it before the first long stage, and
    the render stage writes those files (swift's config reads the embedded model's config.json: it is made first)."""
    import yaml
    from helpers import tiny_recipe_data

    from domainft import render as R
    from domainft.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe_data("t", engine, [DATA / "coal" / "demo_qa.jsonl"], max_steps=1,
                                                      save_steps=1)))
    rendered: list[dict[str, str]] = []
    real = R.render
    monkeypatch.setattr(R, "render", lambda plan: rendered.append(real(plan)) or rendered[-1])
    run_dir = tmp_path / "run"
    app(["run", str(recipe), "--only", "render", "--run-dir", str(run_dir)], prog_name="domainft",
        standalone_mode=False)
    assert len(rendered) == 1
    folder = run_dir / "render" / engine
    assert {rel: (folder / rel).read_text(encoding="utf-8") for rel in rendered[0]} == rendered[0]
    # the same files as a fresh render now: the embedded model was made before the one render
    assert real(make_plan(recipe_from_dict(yaml.safe_load(recipe.read_text())), run_dir=run_dir)) == rendered[0]


def test_training_launches_from_the_preflight_files_when_the_render_stage_is_skipped(tmp_path, monkeypatch):
    """A run whose render stage is skipped (done, or not asked for) trains from the files its preflight rendered and
    checked: no second render; the dataset is checked again, as the render stage would have."""
    from helpers import tiny_recipe_data

    from domainft import pipeline, train
    from domainft import render as R

    data = tiny_recipe_data("t", "llamafactory", [DATA / "coal" / "demo_qa.jsonl"], max_steps=1, save_steps=1)
    plan = make_plan(recipe_from_dict(data), run_dir=tmp_path)
    files = R.render_checked(plan)  # what the preflight of `domainft run` returns
    launched: list[dict[str, str] | None] = []
    monkeypatch.setattr(train, "train", lambda plan, files=None: launched.append(files))
    monkeypatch.setattr(R, "render", lambda plan: pytest.fail("rendered a second time"))
    stages = pipeline._rendering_once(plan, pipeline.STAGES, files)
    next(s for s in stages if s.name == "train").run(plan)
    assert launched == [files]
