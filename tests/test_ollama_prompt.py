"""tests/ollama_prompt.py renders Modelfile TEMPLATEs as Go's own text/template does.

When a Go toolchain is installed (`go` on PATH; Debian: golang-go), every TEMPLATE domainft writes is executed by
Go's text/template, set up as Ollama sets it up (missingkey=zero, Ollama's `json` function, the values
template.Execute passes), over conversations that exercise each branch, and the text must equal the Python
renderer's. Without Go the comparison is skipped; the renderer's own cases below always run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from domainft.chat_formats import family_names
from domainft.export import render_modelfile
from domainft.recipe import recipe_from_dict

from ollama_prompt import GoTemplateError, execute, modelfile_commands, ollama_prompt

# Ollama's template/template.go, reduced to what executing one template needs.
GO_PROGRAM = r"""
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Case struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	var out []string
	for _, c := range cases {
		tmpl := template.Must(template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template))
		var msgs []*Message
		for i := range c.Messages {
			msgs = append(msgs, &c.Messages[i])
		}
		var b stringsBuilder
		if err := tmpl.Execute(&b, map[string]any{"System": c.System, "Messages": msgs, "Tools": nil,
			"Response": "", "Think": false, "IsThinkSet": false}); err != nil {
			panic(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type stringsBuilder struct{ buf []byte }

func (s *stringsBuilder) Write(p []byte) (int, error) { s.buf = append(s.buf, p...); return len(p), nil }
func (s *stringsBuilder) String() string                { return string(s.buf) }
"""

CONVERSATIONS = [
    [{"role": "user", "content": "问一"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}],
    [{"role": "system", "content": "S \"quoted\" \\ {{ .X }}"}, {"role": "user", "content": "Q"}],
]


def _modelfiles() -> list[str]:
    texts = []
    for name in family_names():
        for model in ({"system_prompt": "你是专家。"}, {"system_prompt": ""},
                      {"system_prompt": "你是专家。", "system_prompt_in": "user"},
                      {"system_prompt": "", "enable_thinking": True}):
            recipe = recipe_from_dict({"name": "t", "dataset": {"files": ["x.jsonl"]},
                                       "model": {"chat_template": name, **model}})
            texts.append(render_modelfile(recipe, "m.gguf"))
    return texts


def _go_cases() -> list[dict]:
    """What Ollama passes to Execute: SYSTEM prepended unless the request has a system message; .System joined."""
    cases = []
    for text in _modelfiles():
        commands = modelfile_commands(text)
        for conversation in CONVERSATIONS:
            msgs = list(conversation)
            if commands.get("SYSTEM") and msgs[0]["role"] != "system":
                msgs = [{"role": "system", "content": commands["SYSTEM"]}, *msgs]
            system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
            cases.append({"template": commands["TEMPLATE"], "system": system, "messages": msgs, "conversation": conversation,
                          "modelfile": text})
    return cases


def test_python_renderer_matches_go_text_template(tmp_path):
    if shutil.which("go") is None:
        if os.environ.get("CI"):  # scripts/install.sh installs it: on CI a missing toolchain is a failure, not a skip
            pytest.fail("no Go toolchain: scripts/install.sh installs Debian's golang-go")
        pytest.skip("no Go toolchain (apt-get install golang-go) to compare against")
    cases = _go_cases()
    (tmp_path / "main.go").write_text(GO_PROGRAM, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin:/usr/local/go/bin", "HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"),
           "GO111MODULE": "off", "GOPATH": str(tmp_path / "gopath")}
    payload = json.dumps([{k: c[k] for k in ("template", "system", "messages")} for c in cases])
    done = subprocess.run([shutil.which("go"), "run", str(tmp_path / "main.go")], input=payload, capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    rendered_by_go = json.loads(done.stdout)
    for case, go_text in zip(cases, rendered_by_go):
        assert ollama_prompt(case["modelfile"], case["conversation"]) == go_text, case["template"][:200]


def test_renderer_basics():
    data = {"System": "", "Messages": [{"Role": "user", "Content": "x"}]}
    assert execute("a  {{- 1 -}}  b", data) == "a1b"
    assert execute('{{ $x := "" }}{{ range .Messages }}{{ $x = .Content }}{{ end }}[{{ $x }}]', data) == "[x]"
    assert execute('{{ or .System "d" }}|{{ and .System "d" }}|{{ eq 1 2 1 }}', data) == "d||true"
    assert execute("{{ if .Missing }}y{{ else if eq (len .Messages) 1 }}one{{ else }}n{{ end }}", data) == "one"
    with pytest.raises(GoTemplateError):
        execute("{{ with .System }}x{{ end }}", data)  # outside the subset: refused, never guessed
