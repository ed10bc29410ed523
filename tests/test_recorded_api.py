"""The API answers a recorded set of requests as it did when they were recorded (see recorded_api.py).

Scores may differ in their last float32 bits and rendered pixels by a few levels (the CPU's
kernels); everything else, messages, statuses, ids, targets and event order, must be the same.
"""

from __future__ import annotations

import json

import pytest
import torch
from recorded_api import RECORDING, answer, scenarios
from reliability_helpers import answer_differences

RECORDS = json.loads(RECORDING.read_text())


@pytest.mark.parametrize("scenario", sorted(scenarios()))
def test_every_recorded_request_gets_the_recorded_answer(scenario):
    from insights_app.transport.server import create_app

    factory, _ = scenarios()[scenario]
    torch.manual_seed(0)
    client = create_app(factory()).test_client()
    recorded = [r for r in RECORDS if r["scenario"] == scenario]
    assert recorded, f"nothing recorded for {scenario}"
    problems = []
    for r in recorded:
        got = answer(client, r["method"], r["path"], r["body"])
        where = f"{r['method']} {r['path']} {json.dumps(r['body'])[:120]}"
        if (got["status"], got["type"]) != (r["status"], r["type"]):
            problems.append(f"{where}: status {got['status']} {got['type']}, recorded {r['status']} {r['type']}")
            continue
        diffs = answer_differences(r["json"], got["json"])
        if diffs:
            problems.append(f"{where}: {diffs[:3]}")
    assert not problems, "\n".join(problems[:20])
