"""Rendering helpers: YAML-safe scalars, careful writes, values that stay data."""

from __future__ import annotations

import yaml
import pytest

from domainft.errors import UserError
from domainft.templating import write_tree, yaml_value, environment


@pytest.mark.parametrize("value", [1e-4, 5e-5, 2.0e-4, 0.1, 3.0, 1e7, 0.0, -2.5e-6])
def test_yaml_floats_read_back_as_floats(value):
    text = yaml_value(value)
    parsed = yaml.safe_load(f"x: {text}")["x"]
    assert isinstance(parsed, float) and parsed == pytest.approx(value)


@pytest.mark.parametrize("value", ["plain", "你是一个煤矿安全领域的知识达人", "a: b\n- c", "{{ 1 + 1 }}", "'\"", True, None, 3])
def test_yaml_scalars_round_trip(value):
    assert yaml.safe_load(f"x: {yaml_value(value)}")["x"] == value


def test_write_tree_writes_only_changed_files(tmp_path):
    files = {"a.yaml": "x: 1\n", "sub/b.json": "{}\n"}
    assert len(write_tree(files, tmp_path)) == 2
    before = (tmp_path / "a.yaml").stat().st_mtime_ns
    assert write_tree(files, tmp_path) == []
    assert (tmp_path / "a.yaml").stat().st_mtime_ns == before
    assert write_tree({**files, "a.yaml": "x: 2\n"}, tmp_path) == [tmp_path / "a.yaml"]


def test_write_tree_refuses_paths_that_escape(tmp_path):
    with pytest.raises(UserError, match="escapes"):
        write_tree({"../evil.yaml": "x"}, tmp_path / "out")
    assert not (tmp_path / "evil.yaml").exists()


def test_write_tree_refuses_a_file_as_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(UserError, match="is a file"):
        write_tree({"a": "b"}, target)


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__ }}",
    "{% import os %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
])
def test_template_injection_in_values_renders_inert(payload):
    template = environment().from_string("system: {{ value | yaml }}\n")
    text = template.render(value=payload)
    assert yaml.safe_load(text)["system"] == payload
