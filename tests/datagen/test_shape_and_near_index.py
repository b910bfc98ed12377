"""The hand-written reply-shape check and MinHash LSH index (kept over jsonschema / datasketch: BENCHMARKS.md)."""

from __future__ import annotations

import random

from domainft.datagen import dedup, load_prompts
from domainft.datagen.clean import NearIndex
from domainft.datagen.prompts import schema_errors


def test_schema_errors_name_the_path_in_one_line_each():
    spec = load_prompts("coal")
    reply = {"pairs": [{"question": "问"}, {"question": 3, "answer": "答"}, "x"]}
    assert schema_errors(reply, spec.schema_) == [
        ".pairs[0].answer missing", ".pairs[0].question shorter than 4", ".pairs[1].question is not string",
        ".pairs[2] is not object",
    ]
    assert schema_errors([], spec.schema_) == ["reply is not object"]
    assert schema_errors({"pairs": []}, spec.schema_) == [".pairs has fewer than 1 items"]
    assert schema_errors({"question": "问" * 121, "answer": "答"}, spec.item_schema) == [".question longer than 120"]
    assert not schema_errors({"pairs": [{"question": "煤矿企业必须建立什么？", "answer": "安全生产责任制度"}]},
                             spec.request_schema(2))


def test_near_index_finds_the_near_duplicate_and_is_deterministic():
    index = NearIndex(0.9)
    index.add("what does clause 7.2 require\x00requirements use shall and shall not")
    index.add("who signs the audit report\x00the lead auditor signs it")
    hit = index.query("what does clause 7.2 require \x00requirements use shall and shall not!")
    assert hit is not None and hit[0] == 0 and hit[1] >= 0.9
    assert index.query("how often are records reviewed\x00once a year by management") is None

    rng = random.Random(3)
    texts = ["".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(40)) for _ in range(40)]
    near = [t[:20] + "煤" + t[21:] for t in texts]  # one character changed: ratio 0.975
    records = [{"instruction": "问题", "input": "", "output": t} for t in texts + near]
    first, second = dedup(records, 0.9), dedup(list(records), 0.9)
    assert first == second and len(first[0]) == 40 and first[1]["near"] == 40
