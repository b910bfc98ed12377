"""The bad-input matrix: each case is a real CLI call a person could make.

The contract for every row: a non-zero exit, the error as one line (`error: ...`, the last on stderr) that
names the place (file, file:line, dotted key or flag), no traceback, and nothing half-written.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import DATA, RECIPES, assert_one_line_error, run_cli

QA = DATA / "coal" / "demo_qa.jsonl"
DEMO = RECIPES / "demo-coal-smollm2.yaml"
SITE_RULES = DATA / "samples" / "site-rules"
PASTED_KEY = "sk-proj-Zq81fLKd03mNa7TxWv2Rb5Yc"  # a made-up key, pasted where the variable's name goes
USAGE_CASES = ("unknown-command", "unknown-subcommand", "unknown-option", "unknown-option-value", "bad-option-type",
               "missing-argument", "extra-argument", "glob-matched-two-ggufs", "init-unknown-lang")


@dataclass
class Case:
    id: str
    #: builds the CLI arguments inside a fresh tmp folder; returns (args, env)
    setup: Callable[[Path], list[str]]
    #: substrings the one error line must contain ("{tmp}" is replaced by the tmp folder)
    needles: tuple[str, ...]
    env: dict[str, str] | None = None
    max_file_bytes: int | None = None


def recipe(tmp: Path, body: str, name: str = "r.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def base(extra: str = "", files: str | None = None) -> str:
    return f"name: t\ndataset:\n  files: [{files or QA}]\n" + textwrap.dedent(extra)


def validate(body: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["validate", recipe(tmp, body)]


def write_jsonl(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES: list[Case] = [
    # ---- the recipe file itself
    Case("recipe-missing", lambda t: ["validate", t / "nope.yaml"], ("nope.yaml", "not found")),
    Case("recipe-is-folder", lambda t: ["validate", t], ("is a folder",)),
    Case("recipe-empty", validate(""), ("r.yaml", "empty")),
    Case("recipe-top-level-list", validate("- a\n- b\n"), ("r.yaml", "mapping")),
    # 8 levels of 9 aliases: 43 million values once expanded (it took 58 s and 1.8 GB before it was refused)
    Case("yaml-alias-bomb", validate("name: t\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))), ("r.yaml:", "alias bomb")),
    Case("yaml-alias-loop", validate("name: t\na: &a [1, *a]\n"), ("r.yaml:2", "contains it")),
    Case("yaml-syntax-error", validate("name: t\ntraining: [1, 2\n"), ("r.yaml:", "YAML syntax error")),
    Case("yaml-tab-indent", validate("name: t\ntraining:\n\tseed: 1\n"), ("r.yaml:3", "YAML syntax error")),
    Case("recipe-not-utf8", lambda t: ["validate", _gbk_recipe(t)], ("r.yaml", "not UTF-8")),
    Case("recipe-binary", lambda t: ["validate", _binary(t, "r.yaml")], ("r.yaml",)),
    # ---- keys
    Case("unknown-top-key", validate(base("trainning:\n  seed: 1\n")), ("r.yaml:4", "'trainning'", "did you mean 'training'")),
    Case("misspelt-nested-key", validate(base("training:\n  learning_rat: 1.0e-4\n")), ("r.yaml:5", "training.learning_rat", "learning_rate")),
    Case("misspelt-method-key", validate(base("method:\n  rnak: 8\n")), ("method.rnak", "did you mean 'rank'")),
    Case("renamed-key", validate(base("method:\n  lora_rank: 8\n")), ("r.yaml:5", "renamed to 'method.rank'")),
    Case("missing-name", validate(f"dataset:\n  files: [{QA}]\n"), ("r.yaml", "missing required key 'name'")),
    Case("bad-name", validate(f"name: 'a b/c'\ndataset:\n  files: [{QA}]\n"), ("r.yaml:1", "'name'")),
    # ---- types and ranges
    Case("negative-lr", validate(base("training:\n  learning_rate: -1.0e-4\n")), ("r.yaml:5", "training.learning_rate", "greater than 0")),
    Case("rank-zero", validate(base("method:\n  rank: 0\n")), ("r.yaml:5", "method.rank")),
    Case("alpha-as-text", validate(base("method:\n  alpha: sixteen\n")), ("r.yaml:5", "method.alpha", "integer")),
    Case("epochs-as-list", validate(base("training:\n  epochs: [1]\n")), ("training.epochs",)),
    Case("dropout-one", validate(base("method:\n  dropout: 1.0\n")), ("method.dropout",)),
    Case("warmup-above-one", validate(base("training:\n  warmup_ratio: 1.5\n")), ("training.warmup_ratio",)),
    Case("unknown-method", validate(base("method:\n  kind: dora\n")), ("method.kind", "'lora'")),
    Case("unknown-engine", validate(base("engine: unsloth\n")), ("r.yaml:4", "'engine'", "llamafactory")),
    Case("deepspeed-stage-1", validate(base("distributed:\n  deepspeed: 1\n")), ("distributed.deepspeed",)),
    Case("bad-lora-target", validate(base("method:\n  target_modules: [q_prj]\n")), ("method.target_modules", "did you mean 'q_proj'")),
    Case("overlap-above-chunk", validate(base("extract:\n  chunk_chars: 200\n  overlap_chars: 300\n")), ("extract", "overlap_chars")),
    Case("openai-without-url", validate(base("extract:\n  inputs: [x]\ndatagen:\n  provider: openai\n  model: m\n")), ("datagen", "base_url")),
    Case("unknown-embedded-model", validate(base("model:\n  base: embedded:smollm3\n")), ("model.base", "embedded:smollm2")),
    Case("no-training-data", validate("name: t\n"), ("r.yaml", "no training data")),
    # ---- command line
    Case("bad-override-syntax", lambda t: ["validate", DEMO, "-s", "training.seed"], ("-s training.seed", "key.path=value")),
    Case("override-unknown-key", lambda t: ["validate", DEMO, "-s", "training.sead=1"], ("training.sead", "did you mean 'seed'")),
    Case("override-bad-value", lambda t: ["validate", DEMO, "-s", "training.batch_size=-2"], ("training.batch_size",)),
    Case("unknown-engine-flag", lambda t: ["render", DEMO, "--engine", "axolotll", "-o", t / "out"], ("--engine", "did you mean 'axolotl'")),
    Case("unknown-stage", lambda t: ["run", DEMO, "--run-dir", t / "run", "--only", "trian"], ("--only", "did you mean 'train'")),
    # Usage mistakes: click's own errors, as one line naming the command and the mistake (exit 2, asserted below).
    Case("unknown-command", lambda t: ["trian", DEMO], ("domainft: no such command 'trian'", "did you mean 'train'")),
    Case("unknown-subcommand", lambda t: ["engines", "instal"], ("domainft engines", "'instal'", "did you mean 'install'")),
    Case("unknown-option", lambda t: ["run", DEMO, "--form", "datagen"], ("domainft run", "'--form'", "did you mean '--from'")),
    Case("unknown-option-value", lambda t: ["eval", DEMO, "--backend", "vlm"], ("--backend", "'vlm'", "did you mean 'vllm'")),
    Case("bad-option-type", lambda t: ["review", DEMO, "--port", "abc"], ("--port", "'abc'")),
    Case("missing-argument", lambda t: ["validate"], ("domainft validate", "missing argument", "--help")),
    Case("extra-argument", lambda t: ["validate", DEMO, "extra"], ("domainft validate", "unexpected extra argument 'extra'")),
    Case("glob-matched-two-ggufs", lambda t: ["chat", _bytes(t, "a.gguf", b"x"), _bytes(t, "b.gguf", b"x"), "-q", "hi"],
         ("domainft chat", "b.gguf", "glob")),
    Case("override-names-itself", lambda t: ["validate", recipe(t, base("engine: llamafactory\n")), "-s", "engine=unsloth"],
         ("-s engine=unsloth", "'unsloth'", "llamafactory")),
    Case("override-out-of-range", lambda t: ["validate", recipe(t, base("training:\n  batch_size: 2\n")), "-s",
                                             "training.batch_size=0"], ("-s training.batch_size=0",)),
    Case("key-pasted-as-key-env", lambda t: ["validate", DEMO, "-s", f"datagen.api_key_env={PASTED_KEY}"],
         ("-s datagen.api_key_env=…", "looks like a key")),
    Case("key-pasted-as-override", lambda t: ["validate", DEMO, "-s", PASTED_KEY], ("-s", "looks like a key")),
    # ---- caught before the first long stage: at validate, and by run before it starts
    Case("documents-missing-at-validate", validate(base("extract:\n  inputs: [nowhere]\n")),
         ("extract.inputs", "nowhere", "not found")),
    Case("domain-without-prompts", lambda t: ["validate", recipe(t, f"name: t\ndomain: safety\nextract:\n  inputs: [{SITE_RULES}]\n")],
         ("domain 'safety' has no datagen prompts", "datagen.prompts")),
    Case("domain-without-tasks", validate(base("domain: safety\n")), ("eval.tasks", "no eval tasks for domain 'safety'")),
    Case("run-with-nothing-to-evaluate", lambda t: ["run", recipe(t, base()), "--run-dir", t / "run"],
         ("eval.tasks", "no eval tasks", "--skip eval")),
    Case("own-eval-items-missing", validate(base("eval:\n  tasks: [mine.jsonl]\n")), ("eval.tasks", "mine.jsonl", "not found")),
    # ---- init
    Case("init-docs-missing", lambda t: ["init", t / "nope"], ("nope", "no such file")),
    Case("init-nothing-readable", lambda t: ["init", _folder(t, "empty")], ("empty", "no readable documents")),
    Case("init-would-overwrite", lambda t: ["init", SITE_RULES, "-o", _file(t, "mine.yaml")], ("mine.yaml", "already exists")),
    Case("init-bad-name", lambda t: ["init", SITE_RULES, "--name", "a b", "-o", t / "r.yaml"], ("--name", "'a b'")),
    Case("init-unknown-lang", lambda t: ["init", SITE_RULES, "--lang", "fr"], ("--lang", "'fr'")),
    # ---- dataset files
    Case("dataset-file-missing", validate(base(files=str(Path("/nonexistent/qa.jsonl")))), ("qa.jsonl",)),
    Case("dataset-empty", lambda t: ["validate", recipe(t, base(files=str(write_jsonl(t, "e.jsonl", ""))))], ("e.jsonl", "no records")),
    Case("dataset-not-json", lambda t: ["validate", recipe(t, base(files=str(write_jsonl(t, "bad.jsonl", "{oops\n"))))], ("bad.jsonl",)),
    Case("dataset-column-typo", validate(f"name: t\ndataset:\n  files: [{QA}]\n  columns: {{prompt: instrction}}\n"),
         ("demo_qa.jsonl", "instrction", "did you mean 'instruction'")),
    Case("dataset-role-typo", validate(f"name: t\ndataset:\n  files: [{QA}]\n  columns: {{promt: instruction}}\n"),
         ("r.yaml:2", "dataset", "did you mean 'prompt'")),
    Case("template-engine-lacks", validate(base("model:\n  chat_template: smollm3\n")), ("model.chat_template", "no chat template 'smollm3'")),
    Case("template-not-the-tokenizers", validate(base("model:\n  chat_template: deepseekr1\n")),
         ("model.chat_template", "does not match the tokenizer")),
    Case("axolotl-lacks-alpaca-format", lambda t: ["validate", recipe(t, base("model:\n  chat_template: llama3\n")), "-e", "axolotl"],
         ("model.chat_template", "alpaca")),
    Case("missing-engine-venv", lambda t: ["validate", DEMO, "--deep"], ("llamafactory", "engines install"),
         env={"DOMAINFT_HOME": "/nonexistent-domainft-home"}),
    # ---- documents
    Case("doc-old-word-format", lambda t: ["extract", _bytes(t, "a.doc", b"\xd0\xcf\x11\xe0" + bytes(600)), "-o", t / "c.jsonl"],
         ("a.doc", ".doc is not supported")),
    Case("doc-empty", lambda t: ["extract", _bytes(t, "e.txt", b""), "-o", t / "c.jsonl"], ("e.txt", "empty file")),
    Case("doc-binary", lambda t: ["extract", _bytes(t, "b.txt", bytes(range(256)) * 64), "-o", t / "c.jsonl"], ("b.txt",)),
    Case("doc-50mb", lambda t: ["extract", _bytes(t, "big.txt", "第一条 煤矿。\n".encode() * 2_700_000), "-o", t / "c.jsonl"],
         ("big.txt", "too large")),
    Case("doc-unsupported-type", lambda t: ["extract", _bytes(t, "s.xlsx", b"PK\x03\x04"), "-o", t / "c.jsonl"], ("s.xlsx", "unsupported")),
    Case("doc-input-missing", lambda t: ["extract", t / "nope", "-o", t / "c.jsonl"], ("nope", "no such file")),
    Case("disk-full-while-writing", lambda t: ["extract", DATA / "coal" / "docs", "-o", t / "chunks.jsonl"],
         ("chunks.jsonl", "cannot write"), max_file_bytes=16_384),
    Case("output-not-writable", lambda t: ["render", DEMO, "-o", "/proc/domainft-no-such/out"], ("/proc/domainft-no-such", "cannot write")),
    # ---- teacher, eval, export, chat
    Case("teacher-refuses-connection", lambda t: ["datagen", _teacher_recipe(t), "--run-dir", t / "run"], ("127.0.0.1",)),
    Case("teacher-key-missing", lambda t: ["datagen", _teacher_recipe(t, key_env="DOMAINFT_TEST_NO_SUCH_KEY"), "--run-dir", t / "run"],
         ("DOMAINFT_TEST_NO_SUCH_KEY",)),
    Case("split-unit-unknown", lambda t: ["datagen", DEMO, "--split-unit", "paragraph", "--run-dir", t / "run"],
         ("--split-unit", "'paragraph'", "section")),
    Case("eval-unknown-task", lambda t: ["eval", DEMO, "-s", "eval.tasks=[coal_safty]", "--run-dir", t / "run"], ("coal_safty", "coal_safety")),
    Case("export-unknown-quant", lambda t: ["export", DEMO, "--quant", "q4_k_n", "--run-dir", t / "run"], ("--quant", "q4_k_m")),
    Case("chat-missing-gguf", lambda t: ["chat", t / "model.gguf", "-q", "hi"], ("model.gguf", "no such model")),
    Case("chat-not-a-gguf", lambda t: ["chat", _bytes(t, "m.gguf", b"not gguf"), "-q", "hi"], ("m.gguf",)),
    Case("chat-questions-missing", lambda t: ["chat", DEMO, "--questions", t / "q.txt", "--run-dir", t / "run"], ("q.txt", "not found")),
    Case("chat-before-training", lambda t: ["chat", DEMO, "-q", "hi", "--run-dir", t / "run"], ("run", "train")),
    # fp32: a bf16 recipe is refused on a machine without a GPU before any stage runs (test_hub.py covers that)
    Case("run-documents-missing", lambda t: ["run", recipe(t, base("extract:\n  inputs: [nowhere]\ndatagen: {}\n"
                                                                   "training: {precision: fp32}\n")), "--run-dir", t / "run"],
         ("nowhere", "not found")),
    # GPU-only speed switches on a CPU machine: refused before the engine starts (the real venv is probed).
    Case("liger-without-gpu", lambda t: ["train", DEMO, "-s", "training.liger_kernel=true", "--run-dir", t / "run"],
         ("training.liger_kernel", "needs a CUDA GPU", "false")),
    Case("fa2-without-gpu", lambda t: ["train", DEMO, "-s", "engine=axolotl", "-s", "training.attention=fa2",
                                       "--run-dir", t / "run"], ("training.attention", "needs a CUDA GPU", "auto")),
    Case("liger-option-without-plugin", validate(base("engine: axolotl\nengine_overrides:\n  liger_rope: true\n")),
         ("engine_overrides.liger_rope", "LigerPlugin", "training.liger_kernel: true")),
    Case("attention-unknown", validate(base("training:\n  attention: flash\n")), ("training.attention", "fa2")),
    Case("override-key-engine-lacks", validate(base("engine_overrides:\n  lora_rnak: 8\n")), ("engine_overrides.lora_rnak", "did you mean 'lora_rank'")),
    Case("model-folder-missing", validate(base("model:\n  base: /nonexistent/r1-distill\n")),
         ("model.base", "/nonexistent/r1-distill", "does not exist")),
    Case("model-folder-missing-deep", lambda t: ["validate", "--deep", recipe(t, base("model:\n  base: ./no-model\n"))],
         ("model.base", "no-model", "does not exist")),
    Case("model-folder-not-hf", lambda t: ["validate", recipe(t, base(f"model:\n  base: {t}\n"))],
         ("model.base", "no config.json")),
    Case("eval-adapter-without-print-commands", lambda t: ["eval", DEMO, "--adapter", t, "--run-dir", t / "run"],
         ("--adapter", "--print-commands")),
    Case("eval-print-commands-adapter-missing",
         lambda t: ["eval", DEMO, "--print-commands", "--adapter", t / "nope", "--run-dir", t / "run"],
         ("nope", "no such adapter folder")),
    Case("engines-path-unknown", lambda t: ["engines", "path", "llamafactry"], ("llamafactry", "did you mean")),
    # ---- output folders
    Case("render-output-is-file", lambda t: ["render", DEMO, "-o", _file(t, "out")], ("out", "is a file")),
    Case("run-dir-is-file", lambda t: ["run", DEMO, "--run-dir", _file(t, "run")], ("run", "is a file")),
    Case("status-not-a-run", lambda t: ["status", t], ("not inside a run folder",)),
    Case("lineage-missing-file", lambda t: ["lineage", t / "x.gguf"], ("x.gguf", "no such file")),
]


def _bytes(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _teacher_recipe(tmp: Path, key_env: str | None = None) -> Path:
    """datagen against an OpenAI-compatible URL where nothing listens (or whose key variable is unset)."""
    key = f"  api_key_env: {key_env}\n" if key_env else ""
    return recipe(tmp, f"""\
name: t
domain: coal
extract:
  inputs: [{DATA / 'coal' / 'docs'}]
datagen:
  provider: openai
  model: any
  base_url: http://127.0.0.1:{free_port()}/v1
  max_retries: 1
  timeout_s: 5
{key}""")


def _gbk_recipe(tmp: Path) -> Path:
    path = tmp / "r.yaml"
    path.write_bytes("name: 煤矿\n".encode("gbk"))
    return path


def _binary(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(bytes(range(256)) * 8)
    return path


def _file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_text("I am a file\n")
    return path


def _folder(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_nothing_half_written(folder: Path, before: dict[str, bytes]) -> None:
    """New files may exist (a run's manifest records a failure) but each must be whole: no temp files left,
    every JSON and JSONL file parses."""
    for rel, data in _snapshot(folder).items():
        if rel in before:
            continue
        name = Path(rel).name
        assert not name.endswith((".tmp", ".partial")) and ".tmp" not in name, f"left behind: {rel}"
        if name.endswith(".json"):
            json.loads(data)
        elif name.endswith(".jsonl"):
            for line in data.decode().splitlines():
                json.loads(line)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clear_line(case: Case, tmp_path: Path):
    args = case.setup(tmp_path)
    before = _snapshot(tmp_path)
    result = run_cli(*args, env=case.env, max_file_bytes=case.max_file_bytes, timeout=120)
    assert_one_line_error(result, *[n.replace("{tmp}", str(tmp_path)) for n in case.needles])
    _assert_nothing_half_written(tmp_path, before)
    if case.id in USAGE_CASES:  # a command-line mistake: click's exit code, and where the help is
        assert result.code == 2 and "--help'" in result.stderr, result
    assert PASTED_KEY not in result.stdout + result.stderr
    assert ".yaml:" not in result.stderr or not case.id.startswith("override-"), result.stderr  # the override, not a line


def test_matrix_size():
    print(f"\nbad-input matrix: {len(CASES)} cases")
    assert len(CASES) >= 40
