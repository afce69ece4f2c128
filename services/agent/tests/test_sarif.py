"""SARIF 2.1.0 validated against the OASIS TC's JSON schema (see sarif_schema.py)."""

from __future__ import annotations

import jsonschema
import pytest
from vots_agent.analysis import SourceFile, analyze
from vots_agent.findings import ContextHit
from vots_agent.sarif import to_sarif

from tests.conftest import KNOWN
from tests.sarif_schema import load


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = load()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_sarif_of_real_findings_validates(validator: jsonschema.protocols.Validator) -> None:
    from dataclasses import replace

    a = analyze([SourceFile("src/run me.py", KNOWN), SourceFile("bad.py", "def f(:\n")])
    hit = ContextHit("ops/proc.py", 10, 20, 0.8, "run", "def run(): ...")
    a = replace(
        a,
        findings=tuple(
            replace(f, similar=(hit,)) if f.rule_id == "B602" else f for f in a.findings
        ),
    )
    log = to_sarif(a)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    runs = {r["tool"]["driver"]["name"]: r for r in log["runs"]}
    assert set(runs) == {"ruff", "bandit", "radon"}
    b602 = next(r for r in runs["bandit"]["results"] if r["ruleId"] == "B602")
    rule = runs["bandit"]["tool"]["driver"]["rules"][b602["ruleIndex"]]
    assert rule["id"] == "B602" and "external/cwe/cwe-78" in rule["properties"]["tags"]
    assert rule["properties"]["security-severity"] == "9.5"
    assert (
        b602["level"] == "error"
        and b602["locations"][0]["physicalLocation"]["region"]["startLine"] == 6
    )
    assert b602["partialFingerprints"]["votsFingerprint/v1"]
    assert (
        b602["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "ops/proc.py"
    )
    f401 = next(r for r in runs["ruff"]["results"] if r["ruleId"] == "F401")
    assert f401["fixes"][0]["artifactChanges"][0]["artifactLocation"]["uri"] == "src/run%20me.py"


def test_sarif_with_no_findings_and_a_tool_error_validates(
    validator: jsonschema.protocols.Validator,
) -> None:
    from dataclasses import replace

    a = analyze([SourceFile("ok.py", "X = 1\n")])
    a = replace(
        a,
        tools=tuple(replace(t, error="ruff exited 2") if t.name == "ruff" else t for t in a.tools),
    )
    log = to_sarif(a)
    assert not list(validator.iter_errors(log))
    ruff = next(r for r in log["runs"] if r["tool"]["driver"]["name"] == "ruff")
    assert ruff["invocations"][0]["executionSuccessful"] is False and ruff["results"] == []


def test_the_validator_does_reject_bad_sarif(validator: jsonschema.protocols.Validator) -> None:
    """The schema is really applied: a result level outside SARIF's is an error."""
    log = to_sarif(analyze([SourceFile("k.py", KNOWN)]))
    log["runs"][0]["results"][0]["level"] = "critical"
    assert list(validator.iter_errors(log))
