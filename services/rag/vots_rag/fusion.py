"""Hybrid ranking: lexical and dense candidates fused with weights chosen per query.

A query that looks like a symbol (``plan_stack``, ``History.record``,
``EngineError``) is mostly a lexical question: the lexical side leads and a
chunk that *defines* the symbol is boosted above the chunks that call it. A
question in words is mostly a semantic one: the dense side leads and the
lexical side breaks ties on the words inside identifiers. The weights were
measured on the labelled set (``eval/queries.yaml``, ``vots-rag eval``), not
assumed: an equal-weight reciprocal-rank fusion ranks worse than dense alone on
questions.

Scores are fused after normalising each side to [0, 1] over its own candidate
list (a convex combination), which keeps how *much* better the first
candidate is; rank-only fusion (RRF) throws that away.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vots_rag.lexical import split_identifier

SYMBOLISH = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?\s*$")


@dataclass(frozen=True)
class Weights:
    lexical: float
    dense: float
    define_boost: float  # added when the chunk defines the queried symbol
    name_boost: float  # added per query word found in the chunk's symbol name
    test_penalty: float  # factor for chunks of test files, unless the query asks about tests


SYMBOL_WEIGHTS = Weights(lexical=0.7, dense=0.3, define_boost=0.6, name_boost=0.0, test_penalty=0.7)
NATURAL_WEIGHTS = Weights(
    lexical=0.3, dense=0.7, define_boost=0.0, name_boost=0.04, test_penalty=0.7
)
TEST_PATH = re.compile(r"(^|/)(tests?/|test_[^/]*$|[^/]*_test\.[a-z]+$|conftest\.py$)")


def is_test_path(path: str) -> bool:
    return TEST_PATH.search(path) is not None


def query_kind(query: str) -> str:
    """``symbol`` for a lone identifier (dotted or not), else ``natural``."""
    if SYMBOLISH.match(query):
        word = query.strip().removesuffix("()")
        # A lone plain word ("caching") is a question in one word, not a name.
        if "_" in word or "." in word or any(c.isupper() for c in word[1:]) or word[:1].isupper():
            return "symbol"
    return "natural"


def symbol_matches(query: str, symbol: str | None) -> bool:
    """Whether a chunk whose symbol is ``symbol`` defines what ``query`` names."""
    if not symbol:
        return False
    q = query.strip().removesuffix("()").lower()
    s = symbol.lower()
    return s == q or s.endswith("." + q) or (("." in q) and s.endswith(q))


def _normalise(hits: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not hits:
        return {}
    top = hits[0][1]
    low = hits[-1][1] if len(hits) > 1 else 0.0
    if top <= low:
        return {cid: 1.0 for cid, _ in hits}
    return {cid: (score - low) / (top - low) for cid, score in hits}


def fuse(
    query: str,
    lexical: Sequence[tuple[str, float]],
    dense: Sequence[tuple[str, float]],
    symbols: Mapping[str, str | None],
    weights: Weights | None = None,
    paths: Mapping[str, str] | None = None,
) -> list[tuple[str, float]]:
    """Candidates of both sides, best first, with their fused score.

    ``symbols`` maps each candidate id to the symbol its chunk defines, ``paths``
    to its file (a test file ranks below the code it tests, unless the query
    asks about tests).
    """
    kind = query_kind(query)
    w = weights or (SYMBOL_WEIGHTS if kind == "symbol" else NATURAL_WEIGHTS)
    lex = _normalise(lexical)
    den = _normalise(dense)
    words = {p for p in split_identifier(re.sub(r"[^A-Za-z0-9_]+", "_", query)) if len(p) > 2}
    about_tests = "test" in query.lower()
    fused: dict[str, float] = {}
    for cid in lex.keys() | den.keys():
        score = w.lexical * lex.get(cid, 0.0) + w.dense * den.get(cid, 0.0)
        symbol = symbols.get(cid)
        if w.define_boost and symbol_matches(query, symbol):
            score += w.define_boost
        if w.name_boost and symbol:
            score += w.name_boost * len(words & set(split_identifier(symbol.replace(".", "_"))))
        penalise = paths is not None and w.test_penalty != 1.0 and not about_tests
        if penalise and is_test_path((paths or {}).get(cid, "")):
            score *= w.test_penalty
        fused[cid] = score
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def reciprocal_rank(
    lexical: Sequence[tuple[str, float]], dense: Sequence[tuple[str, float]], k: int = 60
) -> list[tuple[str, float]]:
    """Equal-weight RRF, kept as the measured baseline for :func:`fuse`."""
    fused: dict[str, float] = {}
    for hits in (lexical, dense):
        for rank, (cid, _) in enumerate(hits):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank + 1)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
