"""The prompt Ollama builds from a Modelfile, rendered in Python: Go's text/template (the subset Modelfile TEMPLATEs
use) and Ollama's own steps around it.

Go text/template, as its documentation specifies it: text and {{actions}} with `{{- ` / ` -}}` trimming all
whitespace (space, tab, CR, LF) on that side; comments; `if` / `else if` / `else` / `end`, `range` (with `$i, $v :=`
or `$v :=`), `$x := pipeline` declarations scoped to the enclosing control structure, `$x = pipeline` assignment;
operands `.`, `.A.B`, `$`, `$x`, `$x.A`, string, number and bool literals, parenthesised pipelines; the functions
`and`, `or` (returning an operand, short-circuit), `not`, `eq` (several right-hand sides), `ne`, `lt`, `le`, `gt`,
`ge`, `len`, `slice`, `index`, and Ollama's `json`. Truth is Go's: false, 0, "", nil and empty collections are
false. Anything outside this subset raises, so a TEMPLATE that uses more fails the test rather than rendering wrongly.
tests/test_same_prompt.py checks this renderer against Go's own (the `go` toolchain) when one is installed.

Ollama (server/routes.go, template/template.go): the Modelfile's SYSTEM becomes a leading system message unless the
request starts with one; messages are collated (consecutive messages of one role merged with a blank line; every
system message also joined into .System); a template that uses .Messages is executed once over
{System, Messages, Tools, Response: "", Think, IsThinkSet, ...}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_SPACE = " \t\r\n"


class GoTemplateError(Exception):
    pass


# ---------------------------------------------------------------- lexing and parsing


def _pieces(src: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", s)] with the trim markers applied to the neighbouring text."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip(_SPACE)
        if m.group(1):
            text = text.rstrip(_SPACE)
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        trim_next, pos = bool(m.group(3)), m.end()
    text = src[pos:]
    out.append(("text", text.lstrip(_SPACE) if trim_next else text))
    return [p for p in out if p != ("text", "")]


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|'
                    r'(?P<decl>:=)|(?P<assign>=)|(?P<punct>[(),|])|(?P<word>[$.A-Za-z_][$.\w]*))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise GoTemplateError(f"cannot read {text[pos:]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _go_unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    body, out, i = literal[1:-1], [], 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[i + 2:i + 2 + n], 16)))
            i += 2 + n
        elif e in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise GoTemplateError(f"unknown escape \\{e}")
    return "".join(out)


@dataclass
class Node:
    kind: str  # text | output | if | range | decl | assign
    value: Any = None
    branches: list[tuple[Any, list[Node]]] = field(default_factory=list)  # if: (pipe or None for else, body)
    names: list[str] = field(default_factory=list)  # range / decl / assign variables
    body: list[Node] = field(default_factory=list)


def parse(src: str) -> list[Node]:
    pieces = _pieces(src)
    nodes, rest = _parse_list(pieces, 0, top=True)
    return nodes


def _parse_list(pieces, i, top=False):
    nodes: list[Node] = []
    while i < len(pieces):
        kind, text = pieces[i]
        if kind == "text":
            nodes.append(Node("text", text))
            i += 1
            continue
        if text.startswith("/*"):
            i += 1
            continue
        word = text.split(None, 1)[0] if text else ""
        if word in ("end", "else"):
            if top:
                raise GoTemplateError(f"unexpected {{{{{text}}}}}")
            return nodes, i
        if word == "if":
            node, i = _parse_if(pieces, i)
            nodes.append(node)
        elif word == "range":
            toks = _tokens(text[len("range"):])
            names: list[str] = []
            if any(k == "decl" for k, _ in toks):
                split = next(j for j, (k, _) in enumerate(toks) if k == "decl")
                names = [v for k, v in toks[:split] if k == "word"]
                toks = toks[split + 1:]
            body, i = _parse_list(pieces, i + 1)
            if pieces[i][1] != "end":
                raise GoTemplateError("range ... else is not supported")
            nodes.append(Node("range", _parse_pipe(toks), names=names, body=body))
            i += 1
        elif word in ("with", "define", "template", "block", "break", "continue"):
            raise GoTemplateError(f"{{{{{word}}}}} is outside the supported subset")
        else:
            toks = _tokens(text)
            if len(toks) > 1 and toks[1][0] in ("decl", "assign") and toks[0][1].startswith("$"):
                nodes.append(Node(toks[1][0], _parse_pipe(toks[2:]), names=[toks[0][1]]))
            else:
                nodes.append(Node("output", _parse_pipe(toks)))
            i += 1
    if not top:
        raise GoTemplateError("missing {{end}}")
    return nodes, i


def _parse_if(pieces, i):
    node = Node("if")
    cond = _parse_pipe(_tokens(pieces[i][1][len("if"):]))
    while True:
        body, i = _parse_list(pieces, i + 1)
        node.branches.append((cond, body))
        text = pieces[i][1]
        if text == "end":
            return node, i + 1
        rest = text[len("else"):].strip()
        if rest.startswith("if "):
            cond = _parse_pipe(_tokens(rest[len("if"):]))
        elif rest == "":
            cond = None
        else:
            raise GoTemplateError(f"unsupported {{{{{text}}}}}")


def _parse_pipe(toks):
    """A pipeline as ("call", [args]) / ("operand", tok) / ("paren", pipe); `|` chains are not supported."""
    if any(v == "|" for _, v in toks):
        raise GoTemplateError("pipelines with | are outside the supported subset")
    args, i = [], 0
    while i < len(toks):
        kind, value = toks[i]
        if value == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(toks[j][1], 0)
                j += 1
            args.append(("paren", _parse_pipe(toks[i + 1:j - 1])))
            i = j
        else:
            args.append(("operand", (kind, value)))
            i += 1
    if not args:
        raise GoTemplateError("empty pipeline")
    if len(args) == 1:
        return args[0]
    return ("call", args)


# ---------------------------------------------------------------- execution


def truth(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)  # Ollama parses with missingkey=zero
    raise GoTemplateError(f"can't evaluate field {name} in {type(value).__name__}")


class _Scope:
    def __init__(self, root: Any):
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise GoTemplateError(f"undefined variable {name}")

    def set(self, name: str, value: Any) -> None:
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise GoTemplateError(f"undefined variable {name}")


def _operand(tok, dot, scope) -> Any:
    kind, value = tok
    if kind == "str":
        return _go_unquote(value) if value.startswith('"') else value
    if kind == "raw":
        return _go_unquote(value)
    if kind == "num":
        return float(value) if "." in value else int(value)
    if value in ("true", "false"):
        return value == "true"
    if value == "nil":
        return None
    if value == ".":
        return dot
    if value.startswith("."):
        base, path = dot, value[1:].split(".")
    elif value.startswith("$"):
        head, _, rest = value.partition(".")
        base, path = scope.get(head), rest.split(".") if rest else []
    else:
        raise GoTemplateError(f"{value} is not a value")
    for name in path:
        base = _field(base, name)
    return base


def _eq(a: Any, b: Any) -> bool:
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        raise GoTemplateError(f"incompatible types for comparison: {a!r} {b!r}")
    return a == b


FUNCS = {
    "not": lambda x: not truth(x),
    "eq": lambda a, *bs: any(_eq(a, b) for b in bs),
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "len": lambda x: len(x),
    "slice": lambda x, *ij: x[ij[0]:ij[1]] if len(ij) == 2 else x[ij[0]:] if ij else x,
    "index": lambda x, *ks: _index(x, ks),
    "json": lambda x: json.dumps(x, separators=(",", ":"), ensure_ascii=False),
}


def _index(x, keys):
    for k in keys:
        x = x[k]
    return x


def _eval(pipe, dot, scope) -> Any:
    kind, value = pipe
    if kind == "operand":
        return _operand(value, dot, scope)
    if kind == "paren":
        return _eval(value, dot, scope)
    head, *args = value
    if head[0] != "operand" or head[1][0] != "word" or head[1][1] not in (*FUNCS, "and", "or"):
        raise GoTemplateError(f"{head} is not a supported function")
    name = head[1][1]
    if name in ("and", "or"):  # short-circuit, returning the deciding operand
        result = None
        for arg in args:
            result = _eval(arg, dot, scope)
            if truth(result) != (name == "and"):
                return result
        return result
    return FUNCS[name](*(_eval(a, dot, scope) for a in args))


def _printed(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _run(nodes: list[Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.value)
        elif node.kind == "output":
            out.append(_printed(_eval(node.value, dot, scope)))
        elif node.kind == "decl":
            scope.frames[-1][node.names[0]] = _eval(node.value, dot, scope)
        elif node.kind == "assign":
            scope.set(node.names[0], _eval(node.value, dot, scope))
        elif node.kind == "if":
            for cond, body in node.branches:
                if cond is None or truth(_eval(cond, dot, scope)):
                    scope.frames.append({})
                    _run(body, dot, scope, out)
                    scope.frames.pop()
                    break
        elif node.kind == "range":
            items = _eval(node.value, dot, scope)
            for index, item in enumerate(items or []):
                frame = {}
                if len(node.names) == 2:
                    frame = {node.names[0]: index, node.names[1]: item}
                elif len(node.names) == 1:
                    frame = {node.names[0]: item}
                scope.frames.append(frame)
                _run(node.body, item, scope, out)
                scope.frames.pop()


def execute(template: str, data: dict[str, Any]) -> str:
    out: list[str] = []
    _run(parse(template), data, _Scope(data), out)
    return "".join(out)


# ---------------------------------------------------------------- Ollama around the template


def modelfile_commands(text: str) -> dict[str, str]:
    """TEMPLATE and SYSTEM of a Modelfile, as Ollama's parser reads triple-quoted values (raw, no escapes)."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    found = dict(re.findall(r'^([A-Z]+) """([\s\S]*?)"""', body, flags=re.MULTILINE))
    return {k: v for k, v in found.items() if k in ("TEMPLATE", "SYSTEM")}


def ollama_prompt(modelfile: str, messages: list[dict[str, str]]) -> str:
    """The text Ollama's /api/chat feeds the model for `messages` under this Modelfile."""
    commands = modelfile_commands(modelfile)
    msgs = list(messages)
    if commands.get("SYSTEM") and (not msgs or msgs[0]["role"] != "system"):
        msgs = [{"role": "system", "content": commands["SYSTEM"]}, *msgs]
    system: list[str] = []
    collated: list[dict[str, str]] = []
    for m in msgs:
        if m["role"] == "system":
            system.append(m["content"])
        if collated and collated[-1]["role"] == m["role"] and m["role"] != "tool":
            collated[-1] = {**collated[-1], "content": collated[-1]["content"] + "\n\n" + m["content"]}
        else:
            collated.append(dict(m))
    data = {"System": "\n\n".join(system), "Messages": [{"Role": m["role"], "Content": m["content"]} for m in collated],
            "Tools": None, "Response": "", "Think": False, "IsThinkSet": False}
    return execute(commands["TEMPLATE"], data)
