"""loadtests/vots.py: the RAG user's searches are the labelled set's, mixed and encoded as meant."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "vots.py"
LABELLED = ROOT / "services" / "rag" / "eval" / "queries.yaml"

# Imported in a child: importing Locust monkey-patches the interpreter with gevent,
# which does not belong in the test process.
DRAW = """
import collections, importlib.util, json, random, sys
from urllib.parse import parse_qs, urlsplit
from geventhttpclient.url import URL

spec = importlib.util.spec_from_file_location("vots", sys.argv[1])
vots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vots)
rng = random.Random(20260101)
n, symbol, second, ks, exact, seen = 5000, 0, 0, collections.Counter(), 0, set()
for _ in range(n):
    params = vots.rag_search_params(rng)
    # What FastHttpSession sends for get(path, params=...): geventhttpclient's URL.
    uri = URL("http://127.0.0.1:8443/api/v1/search", params=params).request_uri
    parsed = urlsplit(uri)
    back = {k: v[0] for k, v in parse_qs(parsed.query, strict_parsing=True).items()}
    exact += parsed.path == "/api/v1/search" and back == {k: str(v) for k, v in params.items()}
    symbol += params["q"] in vots.RAG_SYMBOL_QUERIES
    second += params.get("page") == 2
    ks[params["k"]] += 1
    seen.add(params["q"])
print(json.dumps({"n": n, "symbol": symbol, "second": second, "ks": ks, "exact": exact,
                  "seen": len(seen), "total": len(vots.RAG_SYMBOL_QUERIES + vots.RAG_NATURAL_QUERIES)}))
"""


def _literal(name: str) -> tuple[str, ...]:
    tree = ast.parse(LOCUSTFILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple)
            return value
    raise AssertionError(f"{name} not assigned in {LOCUSTFILE}")


def test_rag_queries_are_the_labelled_sets_own() -> None:
    labelled = yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["queries"]
    by_kind: dict[str, set[str]] = {}
    for q in labelled:
        by_kind.setdefault(q["kind"], set()).add(q["query"])
    symbol, natural = _literal("RAG_SYMBOL_QUERIES"), _literal("RAG_NATURAL_QUERIES")
    assert len(symbol) + len(natural) >= 30
    assert len(set(symbol)) == len(symbol) and len(set(natural)) == len(natural)
    assert set(symbol) <= by_kind["symbol"], set(symbol) - by_kind["symbol"]
    words = by_kind["natural"] | by_kind["architecture"]
    assert set(natural) <= words, set(natural) - words
    # Questions with characters a hand-built URL gets wrong are part of the mix.
    assert any(c in q for q in natural for c in "?',")


def test_rag_searches_mix_symbols_and_questions_and_survive_encoding() -> None:
    env = {**os.environ, "LOCUST_SKIP_MONKEY_PATCH": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", DRAW, str(LOCUSTFILE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    n = got["n"]
    assert got["exact"] == n  # every query, k and page decode to exactly what was meant
    assert 0.56 < got["symbol"] / n < 0.64  # 60% symbols (seeded: no flakiness)
    assert 0.17 < got["second"] / n < 0.23  # one search in five asks for page 2
    assert set(got["ks"]) == {"5", "10"}
    assert got["seen"] == got["total"]  # every query is drawn


AGENT_DRAW = """
import collections, importlib.util, json, random, sys
spec = importlib.util.spec_from_file_location("vots", sys.argv[1])
vots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vots)
rng = random.Random(20261202)
corpus = vots.agent_corpus()
size_of = {name: size for size, files in corpus.items() for name, _ in files}
n, edited, sizes, names, biggest, snippets = 3000, 0, collections.Counter(), set(), 0, 0
for _ in range(n):
    body = vots.agent_request(rng)
    (f,) = body["files"]
    names.add(f["name"])
    sizes[size_of[f["name"]]] += 1
    edited += "# edited " in f["content"]
    snippets += f["name"].startswith("snippets/")
    biggest = max(biggest, len(json.dumps(body).encode()))
print(json.dumps({"n": n, "edited": edited, "sizes": sizes, "names": len(names), "biggest": biggest,
                  "snippets": snippets, "corpus": {k: len(v) for k, v in corpus.items()}}))
"""


def test_agent_requests_mix_sizes_edits_and_code_with_findings() -> None:
    out = subprocess.run(
        [sys.executable, "-c", AGENT_DRAW, str(LOCUSTFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    got = json.loads(out.stdout)
    n = got["n"]
    assert set(got["corpus"]) == {"small", "medium", "large"} and min(got["corpus"].values()) >= 5
    assert abs(got["sizes"]["small"] / n - 0.5) < 0.05
    assert abs(got["sizes"]["large"] / n - 0.15) < 0.04
    assert abs(got["edited"] / n - 0.3) < 0.04  # cache misses as well as hits
    assert got["snippets"] > 0 and got["names"] > 40
    # Every request fits the agent's limits and the edge's max_body for the route (2M).
    assert got["biggest"] < 512 * 1024
    assert len(_literal("AGENT_FINDING_SNIPPETS")) >= 6
