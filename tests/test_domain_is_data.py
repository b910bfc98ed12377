"""A domain is data: `domain: medical` with only datagen/medical.yaml and eval_tasks/medical/ added, no Python
edit, selects its teacher prompts, its eval group and its held-out QA task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import REPO

import domainft.resources as resources
from domainft.datagen import run_datagen
from domainft.evaluate.tasks import heldout_task, resolve_tasks
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict


@pytest.fixture
def medical_checkout(tmp_path, monkeypatch) -> Path:
    """The user folders of the checkout plus a throwaway `medical` domain, made of files only."""
    root = tmp_path / "checkout"
    for name in resources.FOLDERS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    prompts = yaml.safe_load((root / "datagen" / "coal.yaml").read_text(encoding="utf-8"))
    prompts.update(name="medical", pairs_per_chunk=2)
    (root / "datagen" / "medical.yaml").write_text(yaml.safe_dump(prompts, allow_unicode=True), encoding="utf-8")
    tasks = root / "eval_tasks" / "medical"
    tasks.mkdir()
    (tasks / "medical_qa.yaml").write_text(
        "task: medical_qa\ncustom_dataset: !function utils.load_qa\ndataset_kwargs:\n  data_file: medical_qa.jsonl\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "generation_kwargs: {until: [], do_sample: false, max_gen_toks: 64}\nprocess_results: !function utils.process_qa\n"
        "metric_list:\n  - {metric: rouge_l_char, aggregation: mean, higher_is_better: true}\nmetadata: {version: 1.0}\n")
    shutil.copy(root / "eval_tasks" / "coal_safety" / "utils.py", tasks / "utils.py")
    (tasks / "medical_qa.jsonl").write_text(json.dumps({"question": "What is triage?", "answer": "Sorting patients."}) + "\n")
    (tasks / "_medical.yaml").write_text("group: medical\ntask: [medical_qa]\nmetadata:\n  version: 1.0\n"
                                         "  heldout_qa: medical_qa\n")
    docs = root / "docs"
    docs.mkdir()
    shutil.copy(REPO / "data" / "coal" / "docs" / sorted(p.name for p in (REPO / "data" / "coal" / "docs").iterdir())[0], docs)
    monkeypatch.setattr(resources, "_root", lambda: root)
    return root


def test_a_domain_added_by_files_only(medical_checkout, tmp_path):
    recipe = recipe_from_dict({
        "name": "med", "domain": "medical",
        "extract": {"inputs": [str(medical_checkout / "docs")]},
        "datagen": {"provider": "extractive", "max_chunks": 6},
    })
    assert recipe.datagen.prompts is None  # nothing named but the domain
    plan = make_plan(recipe, run_dir=tmp_path / "run")
    assert plan.prompts == "medical"
    extract_for_plan(plan)
    summary = run_datagen(plan, progress=False)
    assert summary.done == 6 and summary.pairs > 0
    assert resolve_tasks(plan) == ["medical"]
    heldout = heldout_task(plan, ["medical"])
    assert heldout.name == "medical_qa_heldout.yaml"
    # lm-eval itself loads the new group and its held-out variant from the task folders.
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=[str(medical_checkout / "eval_tasks"), str(heldout.parent)])
    assert {"medical", "medical_qa", "medical_qa_heldout"} <= set(manager.all_tasks)
