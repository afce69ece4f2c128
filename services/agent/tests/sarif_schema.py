"""The SARIF 2.1.0 JSON schema for the tests, from a registry this machine reaches.

No PyPI distribution ships the schema; the Rust crate ``serde-sarif`` does
(``src/schema.json``: the OASIS SARIF TC's ``Schemata/sarif-schema-2.1.0.json``,
the schema GitHub code scanning documents). The crate is downloaded from
crates.io once, checked against its pinned sha256, and the schema kept in
``services/agent/.cache/`` (checked again on every use). ``.ci/setup test``
runs this module, so the tests themselves need no network:

    services/agent/.venv/bin/python services/agent/tests/sarif_schema.py
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

CRATE = "serde-sarif"
VERSION = "0.8.0"
CRATE_SHA256 = "a053c46f18a8043570d4e32fefc4c6377f82bf29ec310a33e93f273048e3b0be"
SCHEMA_SHA256 = "af47e7b67f24efe74076621fd3a5fbe7398add9e84fe820c971219a385895cea"
URL = f"https://static.crates.io/crates/{CRATE}/{CRATE}-{VERSION}.crate"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "sarif-schema-2.1.0.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch() -> Path:
    if CACHE.is_file() and _sha(CACHE.read_bytes()) == SCHEMA_SHA256:
        return CACHE
    with urllib.request.urlopen(URL, timeout=60) as r:
        crate = r.read()
    if _sha(crate) != CRATE_SHA256:
        raise RuntimeError(f"{URL}: sha256 {_sha(crate)} is not the pinned {CRATE_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(crate), mode="r:gz") as tar:
        member = tar.extractfile(f"{CRATE}-{VERSION}/src/schema.json")
        assert member is not None
        schema = member.read()
    if _sha(schema) != SCHEMA_SHA256:
        raise RuntimeError(f"schema.json in {URL}: sha256 {_sha(schema)} is not pinned")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_bytes(schema)
    tmp.replace(CACHE)
    return CACHE


def load() -> dict[str, Any]:
    path = fetch()
    data = path.read_bytes()
    if _sha(data) != SCHEMA_SHA256:
        raise RuntimeError(f"{path}: not the pinned schema; delete it and run this module")
    schema: dict[str, Any] = json.loads(data)
    return schema


if __name__ == "__main__":
    print(fetch())
    sys.exit(0)
