"""One prompt everywhere: the tokens an engine trains on before the answer are the tokens every deployment feeds
the model before it answers.

For every chat template a recipe can use with every engine (the four spelt out in templates/_shared/alpaca_formats.yaml:
smollm2, qwen, qwen3, deepseekr1; the shipped recipes name smollm2 and deepseekr1), and for a system prompt in the
system turn, none, and one in the user turn (model.system_prompt_in user), one conversation (the first item of the
coal_safety_qa eval task, with its reference answer as the training answer) goes through:

1. the engine's training formatter, run from the rendered folder inside the engine's venv (LLaMA-Factory's
   get_dataset, Axolotl's load_datasets, ms-swift's template.encode): the tokens before the first one the loss
   counts;
2. `domainft chat`'s HF path (HFChat.prompt_ids) on the tokenizer the engine saves beside the adapter, after
   domainft deploys its chat template there (runner.train does the same);
3. lm-eval: the task's own fewshot_context with the run's --system_instruction, through HFLM's apply_chat_template
   and tok_batch_encode, with the --model_args domainft passes;
4. the GGUF llama.cpp's converter makes from that folder, as `domainft chat` applies its embedded chat template
   (llama_cpp's Jinja2ChatFormatter, through GGUFChat);
5. the Modelfile domainft writes, as Ollama would prompt with it (tests/ollama_prompt.py: Go's text/template subset
   and Ollama's SYSTEM and message handling), tokenized by that GGUF's vocabulary as Ollama tokenizes.

All five must give identical token ids.

The hub models' tokenizers (Qwen2.5, Qwen3, DeepSeek-R1-Distill-Qwen) are not on this machine: each is stood in
for by SmolLM2's real BPE tokenizer with that model's special tokens added (as added tokens, so they split text
as in the real one), its BOS and EOS (DeepSeek's tokenizer adds BOS when encoding; so does this one) and its real
chat template (llama.cpp's copies, which scripts/llamacpp_tools.sh puts in the cache). The converter recognises a
tokenizer by hashing what it encodes, and a BOS added in encoding changes that hash for this stand-in, so the
DeepSeek stand-in's GGUF is converted from a copy that says add_bos_token in tokenizer_config.json instead (what
gguf-py writes into the GGUF either way).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from ollama_prompt import ollama_prompt

from domainft import process
from domainft.chat_formats import deploy_chat_template
from domainft.engines import NAMES
from domainft.engines.folder import write_folder
from domainft.engines.venv import ensure_engine
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict
from domainft.render import render
from domainft.resources import folder, home

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
LLAMACPP_VERSION = re.search(r"^VERSION=(\S+)$", (REPO / "scripts" / "llamacpp_tools.sh").read_text(), re.MULTILINE).group(1)
DS_BOS, DS_EOS, DS_USER, DS_ASSISTANT = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"
# name -> (llama.cpp's copy of the model's chat template, None: SmolLM2's own; special tokens to add; plain added
# tokens; bos; eos; whether encoding adds BOS)
FAMILIES = {
    "smollm2": (None, [], [], None, "<|im_end|>", False),
    "qwen": ("Qwen-Qwen2.5-7B-Instruct.jinja", [], [], None, "<|im_end|>", False),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", [], ["<think>", "</think>"], None, "<|im_end|>", False),
    "deepseekr1": ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", [DS_BOS, DS_EOS, DS_USER, DS_ASSISTANT],
                   ["<think>", "</think>"], DS_BOS, DS_EOS, True),
}
SYSTEM = "你是煤矿安全领域的专家。Answer precisely and name the article."
MODES = {"system": {"system_prompt": SYSTEM}, "none": {"system_prompt": ""},
         "user": {"system_prompt": SYSTEM, "system_prompt_in": "user"}}
CASES = [(t, e, m) for t in FAMILIES for e in NAMES for m in MODES]


def _case_id(case: tuple[str, str, str]) -> str:
    return "-".join(case)


# ---------------------------------------------------------------- the models


def _build_model(name: str, out: Path) -> Path:
    """A tiny random Llama with the stand-in tokenizer of `name` (see the module docstring)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainft.models.embedded import materialize

    template_file, specials, added, bos, eos, add_bos = FAMILIES[name]
    source = Path(materialize("embedded:tiny-random-llama"))
    tokenizer = AutoTokenizer.from_pretrained(source)
    if template_file is not None:
        path = home() / "llamacpp" / LLAMACPP_VERSION / "templates" / template_file
        if not path.exists():
            pytest.skip(f"{path} missing: scripts/llamacpp_tools.sh extracts llama.cpp's templates")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    tokenizer.add_special_tokens({"additional_special_tokens": specials, **({"bos_token": bos} if bos else {}),
                                  "eos_token": eos, "pad_token": eos})
    tokenizer.add_tokens(added)
    if add_bos:
        tokenizer.add_bos_token = True  # transformers writes the BOS into tokenizer.json's post-processor
    tokenizer.save_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = model.config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    if add_bos:
        assert tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("same-prompt")


@pytest.fixture(scope="module")
def models(work) -> dict[str, Path]:
    return {name: _build_model(name, work / "models" / name) for name in FAMILIES}


@pytest.fixture(scope="module")
def qa_task():
    """coal_safety_qa, loaded by lm-eval's own task manager from eval_tasks/."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder("eval_tasks")), include_defaults=False)  # not lm-eval's own 10k
    return manager.load("coal_safety_qa")["tasks"]["coal_safety_qa"]


@pytest.fixture(scope="module")
def eval_item(qa_task) -> tuple[str, str]:
    """The task's first item: (the question as lm-eval puts it to the model, the reference answer)."""
    doc = qa_task.test_docs()[0]
    return qa_task.doc_to_text(doc), doc["answer"]


# ---------------------------------------------------------------- the engines' training formatters


@dataclass
class Case:
    plan: object
    saved: Path  # the tokenizer folder as the engine saves it beside the adapter (a model folder here)


@pytest.fixture(scope="module")
def cases(models, eval_item, work) -> dict[tuple[str, str, str], Case]:
    question, answer = eval_item
    data = work / "qa.jsonl"
    data.write_text(json.dumps({"instruction": question, "input": "", "output": answer}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    out = {}
    for template, engine, mode in CASES:
        name = _case_id((template, engine, mode))
        recipe = recipe_from_dict({
            "name": name, "engine": engine, "dataset": {"files": [str(data)]},
            "model": {"base": str(models[template]), "chat_template": template, **MODES[mode]},
            "training": {"precision": "fp32", "cutoff_len": 512},
        })
        plan = make_plan(recipe, run_dir=work / "runs" / name)
        write_folder(plan, render(plan), plan.render_dir)
        out[(template, engine, mode)] = Case(plan, work / "saved" / name)
    return out


# Each script reads a list of jobs ({folder, scratch, save, out}) from stdin, encodes the rendered folder's one
# training example with the engine's own data pipeline, writes [input_ids, trained] (whether the loss counts each
# token) to `out` and saves the tokenizer as the engine does beside its adapter into `save`.
ENCODERS = {
    "llamafactory": """
import json, os, sys, yaml
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.data.loader import get_dataset
for job in json.load(sys.stdin):
    os.chdir(job["folder"])
    cfg = yaml.safe_load(open("train.yaml", encoding="utf-8"))
    model_args, data_args, training_args, _, _ = get_train_args({**cfg, "output_dir": job["scratch"]})
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    ex = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)["train_dataset"][0]
    json.dump([ex["input_ids"], [label != -100 for label in ex["labels"]]], open(job["out"], "w"))
    module["tokenizer"].save_pretrained(job["save"])
""",
    "axolotl": """
import json, os, sys
from axolotl.cli.config import load_cfg
from axolotl.loaders import load_tokenizer
from axolotl.prompt_strategies import load
for job in json.load(sys.stdin):
    os.chdir(job["folder"])
    cfg = load_cfg("axolotl.yml", output_dir=job["scratch"])  # validated and normalized as `axolotl train` does
    tokenizer = load_tokenizer(cfg)
    dataset = cfg.datasets[0]
    record = json.loads(open(dataset.path, encoding="utf-8").readline())
    # the strategy Axolotl maps over the dataset for a user-defined alpaca type (utils/data/wrappers.py)
    ex = load("user_defined", tokenizer, cfg, dataset.type.to_dict()).tokenize_prompt(record)
    json.dump([ex["input_ids"], [label != -100 for label in ex["labels"]]], open(job["out"], "w"))
    tokenizer.save_pretrained(job["save"])
""",
    "swift": """
import json, os, sys
def main():
    import yaml
    from swift.arguments import SftArguments
    from swift.utils import parse_args
    for job in json.load(sys.stdin):
        os.chdir(job["folder"])
        cfg = {**yaml.safe_load(open("sft.yaml", encoding="utf-8")), "output_dir": job["scratch"]}
        argv = []
        for k, v in cfg.items():  # as `swift sft sft.yaml` turns the file into arguments
            argv += ["--" + k, *([str(i) for i in v] if isinstance(v, list) else
                                 [json.dumps(v) if isinstance(v, dict) else str(v)])]
        args, _ = parse_args(SftArguments, argv)
        processor = args.get_model_processor(load_model=False)[1]
        template = args.get_template(processor)
        template.set_mode("train")
        ex = template.encode(args.load_dataset()[0][0])
        scale = ex.get("loss_scale") or [1.0] * len(ex["labels"])
        json.dump([ex["input_ids"], [l != -100 and s != 0 for l, s in zip(ex["labels"], scale)]], open(job["out"], "w"))
        processor.save_pretrained(job["save"])
if __name__ == "__main__":
    main()
""",
}


@pytest.fixture(scope="module")
def trained(cases, work) -> dict[tuple[str, str, str], list[int]]:
    """Per case, the token ids the engine puts before the first token its loss counts."""
    from concurrent.futures import ThreadPoolExecutor

    (work / "encoded").mkdir(exist_ok=True)
    jobs = {key: {"folder": str(case.plan.render_dir), "scratch": str(work / "scratch" / _case_id(key)),
                  "save": str(case.saved), "out": str(work / "encoded" / f"{_case_id(key)}.json")}
            for key, case in cases.items()}

    def encode(engine: str) -> None:
        venv = ensure_engine(engine)
        env = {**process.clean_env(work, venv), "USE_HF": "1", "AXOLOTL_DO_NOT_TRACK": "1"}
        mine = [job for key, job in jobs.items() if key[1] == engine]
        done = process.run([str(venv / "bin" / "python"), "-c", ENCODERS[engine]], env=env, cwd=work,
                           input_text=json.dumps(mine), log_path=work / f"encode-{engine}.log")
        assert done.returncode == 0, f"{engine}: {done.error()} (log: {work / f'encode-{engine}.log'})"

    with ThreadPoolExecutor(len(NAMES)) as pool:  # most of each is importing the engine: overlap them
        list(pool.map(encode, NAMES))
    prompts = {}
    for key, job in jobs.items():
        ids, counted = json.loads(Path(job["out"]).read_text())
        prompts[key] = ids[: counted.index(True)]
        # the saved tokenizer becomes a model folder for chat, lm-eval and the converter
        for item in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy2(Path(cases[key].plan.model_path) / item, Path(job["save"]) / item)
    return prompts


# ---------------------------------------------------------------- the deployments


def _hf_chat(saved: Path, plan, question: str) -> list[int]:
    from domainft.chat import ChatSettings, HFChat

    chat = HFChat(saved, ChatSettings.from_plan(plan))
    return chat.prompt_ids(chat.messages(question))["input_ids"][0].tolist()


def _lm_eval(saved: Path, plan, task) -> list[int]:
    """What lm-eval feeds the model for the task's first item, with the arguments `domainft eval` passes."""
    from lm_eval.models.huggingface import HFLM

    from domainft.evaluate.argv import lm_eval_argv

    argv = lm_eval_argv(plan, label="tuned", tasks=["coal_safety_qa"], limit=1, backend="hf", base_path=str(saved),
                        adapter=None, trained=saved, out_root=saved.parent)
    model_args = dict(kv.split("=", 1) for kv in argv[argv.index("--model_args") + 1].split(","))
    if "enable_thinking" in model_args:
        model_args["enable_thinking"] = model_args["enable_thinking"] == "True"
    system = argv[argv.index("--system_instruction") + 1] if "--system_instruction" in argv else None
    lm = HFLM(**model_args, device="cpu", batch_size=1)
    context = task.fewshot_context(task.test_docs()[0], 0, system_instruction=system, apply_chat_template=True,
                                   chat_template=lm.apply_chat_template)
    return lm.tok_batch_encode([context])[0][0].tolist()


_GGUFS: dict[str, Path] = {}  # per chat template: one converted GGUF, then copies that differ in the chat template


def _gguf(saved: Path, template: str) -> Path:
    """The GGUF of the saved folder: llama.cpp's converter makes the first of each template (checked to embed the
    folder's chat_template.jinja verbatim), and gguf-py's gguf_new_metadata copies it with another case's
    chat_template.jinja, which is what the converter would embed (a conversion takes about 15 s here)."""
    from domainft.export.gguf import convert_hf_to_gguf

    deployed = (saved / "chat_template.jinja").read_text(encoding="utf-8")
    key = template + "\0" + deployed
    if key in _GGUFS:
        return _GGUFS[key]
    out = saved.parent / f"{saved.name}.gguf"
    first = _GGUFS.get(template)
    if first is None:
        source = saved
        if FAMILIES[template][5]:  # the DeepSeek stand-in: see the module docstring
            source = saved.with_name(saved.name + "-convert")
            shutil.copytree(saved, source, dirs_exist_ok=True)
            tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
            tokenizer["post_processor"] = None
            (source / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
            config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
            (source / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True}), encoding="utf-8")
        convert_hf_to_gguf(source, out, outtype="f16", log_path=saved.parent / "convert.log")
        from llama_cpp import Llama

        assert Llama(model_path=str(out), vocab_only=True, verbose=False).metadata["tokenizer.chat_template"] == deployed
        _GGUFS[template] = out
    else:  # what `python -m gguf.scripts.gguf_new_metadata FIRST OUT --chat-template-file ...` does
        import gguf
        from gguf.scripts.gguf_new_metadata import (
            MetadataDetails,
            copy_with_new_metadata,
            get_field_data,
        )

        reader = gguf.GGUFReader(first)
        writer = gguf.GGUFWriter(out, arch=get_field_data(reader, gguf.Keys.General.ARCHITECTURE),
                                 endianess=reader.endianess)
        if (alignment := get_field_data(reader, gguf.Keys.General.ALIGNMENT)) is not None:
            writer.data_alignment = alignment
        copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(
            gguf.GGUFValueType.STRING, deployed)}, [])
    _GGUFS[key] = out
    return out


def _gguf_chat(gguf: Path, plan, question: str) -> list[int]:
    from domainft.chat import ChatSettings, GGUFChat

    chat = GGUFChat(gguf, ChatSettings.from_plan(plan), n_ctx=1024)
    reply = chat.llm.create_chat_completion(messages=chat.messages(question), max_tokens=1, temperature=0)
    return chat.llm.input_ids[: reply["usage"]["prompt_tokens"]].tolist()


def _ollama(gguf: Path, plan, question: str) -> list[int]:
    from llama_cpp import Llama

    from domainft.export import render_modelfile

    prompt = ollama_prompt(render_modelfile(plan.recipe, gguf.name), [{"role": "user", "content": question}])
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return vocab.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)  # Ollama: add special, parse special


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_deployment_prompts_as_the_engine_trained(case, cases, trained, eval_item, qa_task):
    from transformers import AutoTokenizer

    question = eval_item[0]
    template, engine, mode = case
    plan, saved = cases[case].plan, cases[case].saved
    deploy_chat_template(plan.recipe, saved)  # what runner.train does beside the adapter, export in merged/
    gguf = _gguf(saved, template)
    tokenizer = AutoTokenizer.from_pretrained(saved)
    expected = trained[case]
    got = {"domainft chat (HF)": _hf_chat(saved, plan, question), "lm-eval (HF)": _lm_eval(saved, plan, qa_task),
           "domainft chat (GGUF)": _gguf_chat(gguf, plan, question), "Ollama (Modelfile)": _ollama(gguf, plan, question)}
    wrong = [f"{where} prompts differently:\n    {tokenizer.decode(ids)!r}" for where, ids in got.items() if ids != expected]
    assert not wrong, f"{engine} trained on\n    {tokenizer.decode(expected)!r}\n  " + "\n  ".join(wrong)
