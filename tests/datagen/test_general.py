"""The general domain, for documents of any kind: each document asked in its own language (general_zh, general_en),
by a teacher and by the extractive templates alike; untitled clauses named by whole words; only prompt files
offered as prompts."""

from __future__ import annotations

import json
import re

import pytest
from helpers import DATA
from stub_teacher import Stub

from domainft.datagen import run_datagen
from domainft.datagen.teacher import clause_lead
from domainft.errors import RecipeError
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.prompt_files import prompt_names, prompt_paths
from domainft.recipe import recipe_from_dict
from domainft.resources import folder

SITE_RULES = DATA / "samples" / "site-rules"  # two English rules, one Chinese


def _plan(tmp_path, **data):
    recipe = recipe_from_dict({"name": "site", "extract": {"inputs": [str(SITE_RULES)]}, **data})
    plan = make_plan(recipe, run_dir=tmp_path / "run")
    extract_for_plan(plan)
    return plan


def _rows(plan, name):
    path = plan.datagen_dir / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_name_and_documents_are_a_whole_recipe_in_the_general_domain(tmp_path):
    plan = _plan(tmp_path)  # no datagen section: its defaults, the offline extractive teacher
    assert plan.recipe.domain == "general" and plan.recipe.datagen.provider == "extractive"
    assert set(prompt_paths(plan.recipe)) == {"zh", "en"}
    summary = run_datagen(plan, progress=False)
    assert summary.failed == 0 and summary.pairs > 20
    rows = _rows(plan, "pairs.jsonl")  # every pair with its source
    probes = _rows(plan, "knowledge.jsonl")
    assert probes, "the knowledge probe"
    for row in rows:
        question, source = row["instruction"], row["source"]["file"]
        if source.startswith("受限"):
            assert question.startswith("《"), question
        else:  # English documents get English template questions, never the Chinese ones
            assert question.startswith("What does") and "《" not in question and "第" not in question, question
    for probe in probes:
        english = not probe["source"]["file"].startswith("受限")
        assert probe["question"].startswith("According to" if english else "按照"), probe


def test_untitled_english_clauses_are_named_by_whole_words(tmp_path):
    plan = _plan(tmp_path)
    run_datagen(plan, progress=False)
    names = []
    for row in _rows(plan, "pairs.jsonl"):
        if m := re.match(r'What does clause [\d.]+ \((.*)\) of "', row["instruction"]):
            names.append((m.group(1), row["output"]))
    untitled = [(name, body) for name, body in names if body.startswith(name)]
    assert len(untitled) >= 8
    for name, body in untitled:
        assert body[len(name)] in " ,.;:", f"cut mid-word: {name!r} of {body!r}"
        assert name.split()[-1].lower() not in {"a", "an", "the", "of", "at", "shall", "be"}, name
    assert ("The base of an extension ladder", ) == tuple(n for n, _ in untitled if n.startswith("The base"))


def test_clause_lead():
    assert clause_lead("The base of an extension ladder shall be placed one metre out") == \
        "The base of an extension ladder"
    assert clause_lead("Supercalifragilisticexpialidociousandmore words follow") == \
        "Supercalifragilisticexpialidociousandmore"
    assert clause_lead("进入受限空间作业前，必须办理受限空间作业许可证，许可证有效期不超过8小时。") == "进入受限空间作业前"


def test_a_teacher_is_asked_in_each_documents_language(tmp_path):
    with Stub() as stub:
        plan = _plan(tmp_path, datagen={"provider": "openai", "base_url": stub.url, "model": "stub"})
        summary = run_datagen(plan, progress=False)
    assert summary.failed == 0
    english = [p for p in stub.prompts if "Portable Ladder" in p or "Hot Work" in p]
    chinese = [p for p in stub.prompts if "受限空间" in p]
    assert english and chinese
    assert all(p.startswith("Text of ") and "请" not in p for p in english)
    assert all(p.startswith("下面是《") for p in chinese)


def test_only_prompt_files_are_prompts(tmp_path):
    names = prompt_names()
    assert {"general", "general_en", "general_zh", "coal", "iso"} <= set(names)
    assert "curate_rubric" not in names  # a rubric beside the prompts is not one
    recipe = recipe_from_dict({"name": "t", "extract": {"inputs": [str(SITE_RULES)]},
                               "datagen": {"prompts": "curate_rubric"}})
    with pytest.raises(RecipeError) as info:
        prompt_paths(recipe)
    assert info.value.one_line().startswith("datagen.prompts: no prompt file 'curate_rubric'")


def test_a_domain_without_prompts_is_said_without_pointing_into_the_install(tmp_path):
    recipe = recipe_from_dict({"name": "t", "domain": "safety", "extract": {"inputs": [str(SITE_RULES)]}})
    with pytest.raises(RecipeError) as info:
        prompt_paths(recipe)
    line = info.value.one_line()
    assert line.startswith("domain: domain 'safety' has no datagen prompts") and "datagen.prompts" in line
    assert str(folder("datagen")) not in line and "general" in line
