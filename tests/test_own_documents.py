"""Your own documents, start to finish, as a new user meets them: `domainft init` on a folder, what each command says
it made and where, tables that fit an 80-column terminal, and a key pasted where its variable's name goes that
never reaches a file or a line of output. (The whole run on an init recipe: tests/test_readme_own_documents.py.)"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers import DATA, assert_one_line_error, run_cli

from domainft.recipe import load_recipe

SITE_RULES = DATA / "samples" / "site-rules"
KEY = "sk-proj-Zq81fLKd03mNa7TxWv2Rb5Yc"  # made up


@pytest.fixture
def docs(tmp_path) -> Path:
    """A fresh folder of a user's documents: two English rules and one Chinese."""
    return Path(shutil.copytree(SITE_RULES, tmp_path / "my-docs"))


def narrow(*args: str, cwd: Path, env: dict | None = None):
    """The CLI in an 80-column terminal."""
    return run_cli(*args, cwd=cwd, env={"COLUMNS": "80", **(env or {})}, timeout=300)


def assert_fits_80(text: str) -> None:
    """Every table row fits; nothing anywhere is cut with an ellipsis (a line naming a path may be longer: whole)."""
    for line in text.splitlines():
        assert "…" not in line, f"cut: {line}"
        if line[:1] in "┏┃┡│└┌├┗╭╰":
            assert len(line) <= 80, f"{len(line)} columns: {line}"


def test_init_writes_a_recipe_that_validates_and_prints_the_next_command(docs, tmp_path):
    result = run_cli("init", "my-docs", cwd=tmp_path)
    assert result.code == 0, result.stderr
    recipe_file = tmp_path / "my-docs.yaml"
    text = recipe_file.read_text(encoding="utf-8")
    assert result.stdout.startswith(text)  # printed whole
    assert result.stdout.rstrip().endswith("domainft run my-docs.yaml")
    assert "2 English, 1 Chinese" in text and "CPU" in text
    recipe = load_recipe(recipe_file)
    assert recipe.name == "my-docs" and recipe.domain == "general" and recipe.model.base == "embedded:smollm2"
    assert recipe.datagen.provider == "extractive" and recipe.datagen.prompts is None  # each document its language
    assert recipe.extract.inputs == ["my-docs"] and not recipe.eval.tasks  # the run's own data is the eval
    assert recipe.training.max_steps and recipe.training.precision == "fp32" and recipe.eval.limit
    valid = run_cli("validate", "my-docs.yaml", cwd=tmp_path)
    assert valid.code == 0 and "note:" not in valid.stderr, valid
    again = run_cli("init", "my-docs", cwd=tmp_path)  # never over an existing file
    assert_one_line_error(again, "my-docs.yaml", "already exists")
    assert recipe_file.read_text(encoding="utf-8") == text


def test_init_elsewhere_with_a_name_and_one_language(docs, tmp_path):
    (tmp_path / "recipes").mkdir()
    result = run_cli("init", docs, "-o", tmp_path / "recipes" / "rules.yaml", "--name", "site-rules", "--lang", "en",
                     cwd=tmp_path)
    assert result.code == 0, result.stderr
    recipe = load_recipe(tmp_path / "recipes" / "rules.yaml")
    assert recipe.name == "site-rules" and recipe.datagen.prompts == "general_en"
    assert recipe.extract.inputs == ["../my-docs"]  # relative to the recipe file, like every path in it
    assert "all asked in English" in result.stderr


def test_extract_records_itself_and_datagen_does_not_extract_again(docs, tmp_path):
    run_cli("init", "my-docs", cwd=tmp_path)
    extract = narrow("extract", "my-docs.yaml", cwd=tmp_path)
    assert extract.code == 0, extract.stderr
    assert "✓ extract: " in extract.stderr and "runs/my-docs/extract/chunks.jsonl" in extract.stderr
    assert "ladder-safety.txt" in extract.stdout
    status = narrow("status", "runs/my-docs", cwd=tmp_path)
    assert status.code == 0 and "extract/chunks.jsonl" in status.stdout, status
    assert_fits_80(status.stdout)
    datagen = narrow("datagen", "my-docs.yaml", cwd=tmp_path)
    assert datagen.code == 0, datagen.stderr
    assert "extract: up to date, skipped" in datagen.stderr  # recorded: not extracted again
    assert not datagen.stdout.lstrip().startswith("{") and '"pairs_in"' not in datagen.stdout  # a table, not JSON
    for row in ("chunks", "pairs", "split", "knowledge probe", "rejected", "failed chunks"):
        assert row in datagen.stdout, row
    assert "in runs/my-docs/datagen/: train.jsonl, val.jsonl, test.jsonl, knowledge.jsonl" in datagen.stdout
    assert_fits_80(datagen.stdout)
    status = narrow("status", "runs/my-docs", cwd=tmp_path)
    assert "datagen/train.jsonl" in status.stdout
    assert_fits_80(status.stdout)


def test_extract_of_a_folder_says_where_it_wrote(docs, tmp_path):
    result = narrow("extract", "my-docs", cwd=tmp_path)
    assert result.code == 0 and "chunks written to chunks.jsonl" in result.stdout, result
    assert (tmp_path / "chunks.jsonl").is_file()
    assert_fits_80(result.stdout)


def test_recipes_show_their_descriptions_in_80_columns(tmp_path):
    result = narrow("recipes", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "Coal-mine safety assistant" in result.stdout and "iso-r1-qwen7b-qlora-8gib.yaml" in result.stdout
    assert_fits_80(result.stdout)


def test_version(tmp_path):
    from domainft import __version__

    result = run_cli("--version", cwd=tmp_path)
    assert result.code == 0 and result.stdout.strip() == f"domainft {__version__}"


# ------------------------------------------------------------------ a key pasted where its variable's name goes


def _files_holding(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.parametrize("args", [
    ["validate", "my-docs.yaml"],
    ["run", "my-docs.yaml", "--dry-run"],
    ["datagen", "my-docs.yaml"],
    ["run", "my-docs.yaml", "--only", "extract"],
], ids=["validate", "run-dry", "datagen", "run"])
@pytest.mark.parametrize("key", ["datagen.api_key_env", "eval.judge.api_key_env"])
def test_a_pasted_key_is_refused_and_lands_nowhere(docs, tmp_path, args, key):
    run_cli("init", "my-docs", cwd=tmp_path)
    extra = ["-s", "eval.judge.model=m", "-s", "eval.judge.base_url=http://127.0.0.1:9/v1"] if "judge" in key else []
    result = run_cli(*args, *extra, "-s", f"{key}={KEY}", cwd=tmp_path)
    assert_one_line_error(result, f"-s {key}=…", "looks like a key")
    assert KEY not in result.stdout + result.stderr
    assert not _files_holding(tmp_path, KEY)


class _EchoingTeacher(ThreadingHTTPServer):
    """An OpenAI-compatible server that refuses the key and, as some services do, quotes it back in its error."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._refuse()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._refuse()

            def _refuse(self):
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}."}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"


def test_a_key_quoted_back_by_the_teacher_reaches_no_line_and_no_file(docs, tmp_path):
    """The key set the right way (in the environment), refused by a teacher that echoes it: the error line and the
    manifest's record of the failed stage say why, without the key."""
    server = _EchoingTeacher()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_cli("init", "my-docs", cwd=tmp_path)
        result = run_cli("run", "my-docs.yaml", "-s", "datagen.provider=openai", "-s", f"datagen.base_url={server.url}",
                         "-s", "datagen.model=m", "-s", "datagen.api_key_env=SITE_TEACHER_KEY", "-s",
                         "datagen.max_retries=0", cwd=tmp_path, env={"SITE_TEACHER_KEY": KEY})
    finally:
        server.shutdown()
    assert_one_line_error(result, "refused the key")
    assert KEY not in result.stdout + result.stderr
    manifest = json.loads((tmp_path / "runs" / "my-docs" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["stages"]["datagen"]["status"] == "failed" and "<redacted>" in manifest["stages"]["datagen"]["error"]
    assert not _files_holding(tmp_path, KEY)
    assert yaml.safe_load((tmp_path / "my-docs.yaml").read_text(encoding="utf-8"))["name"] == "my-docs"


def test_questions_of_your_own_become_a_task_lm_eval_loads(docs, tmp_path, monkeypatch):
    from lm_eval.tasks._yaml_loader import load_yaml

    from domainft.evaluate.tasks import items_task, resolve_tasks
    from domainft.pipeline import STAGES
    from domainft.plan import make_plan

    items = tmp_path / "my_questions.jsonl"
    rows = [{"question": "How far above the landing surface must a ladder extend?", "answer": "At least one metre."},
            {"question": "动火作业许可证的有效期是多久？", "answer": "一个班次。", "keywords": ["班次"]}]
    items.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "r.yaml").write_text("name: t\nextract: {inputs: [my-docs]}\neval: {tasks: [my_questions.jsonl]}\n")
    plan = make_plan(load_recipe(tmp_path / "r.yaml"), run_dir=tmp_path / "run")
    assert resolve_tasks(plan) == [str(items)]
    eval_stage = next(s for s in STAGES if s.name == "eval")
    assert items in eval_stage.inputs(plan)  # an edit to them rescores
    task = items_task(plan, items)
    assert task.name == "my_questions.yaml"
    monkeypatch.chdir(tmp_path / "my-docs")  # lm-eval runs from anywhere: the variant's paths are absolute
    cfg = load_yaml(task, resolve_func=True)
    assert cfg["task"] == "my_questions" and cfg["output_type"] == "generate_until"
    loaded = cfg["custom_dataset"](**cfg["dataset_kwargs"])["test"]
    assert [d["question"] for d in loaded] == [r["question"] for r in rows] and loaded[1]["keywords"] == ["班次"]


def test_a_hub_model_not_pulled_yet_is_said_not_silently_skipped(docs, tmp_path):
    """Its tokenizer cannot be checked before it is pulled (tests/models/test_hub.py checks it after the pull)."""
    run_cli("init", "my-docs", cwd=tmp_path)
    env = {"DOMAINFT_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    model = ["-s", "model.base=SiteOrg/site-model-1b", "-s", "model.chat_template=qwen", "-s", "training.precision=fp32"]
    unchecked = run_cli("validate", "my-docs.yaml", *model, cwd=tmp_path, env=env)
    assert unchecked.code == 0, unchecked.stderr
    assert "note: model SiteOrg/site-model-1b (huggingface) is not pulled yet for this run" in unchecked.stderr
    assert "tokenizer and chat template are checked once it is" in unchecked.stderr
    dry = run_cli("run", "my-docs.yaml", *model, "--dry-run", cwd=tmp_path, env=env)
    assert dry.code == 0 and "is not pulled yet" in dry.stderr, dry.stderr
