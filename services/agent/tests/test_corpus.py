"""The load test's snippets (loadtests/vots.py) each carry a finding the agent reports."""

from __future__ import annotations

import ast

from vots_agent.analysis import SourceFile, analyze
from vots_agent.findings import RANK

from tests.conftest import REPO


def snippets() -> tuple[str, ...]:
    tree = ast.parse((REPO / "loadtests" / "vots.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "AGENT_FINDING_SNIPPETS" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise AssertionError("AGENT_FINDING_SNIPPETS not in loadtests/vots.py")


def test_every_snippet_has_a_finding_of_medium_or_worse() -> None:
    files = [SourceFile(f"s{i}.py", code) for i, code in enumerate(snippets())]
    a = analyze(files)
    worst = {f.name: 0 for f in files}
    for finding in a.findings:
        worst[finding.file] = max(worst[finding.file], RANK[finding.severity])
    assert all(rank >= RANK["medium"] for rank in worst.values()), worst
