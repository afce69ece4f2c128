"""Retrieval quality on a labelled set: recall@5, MRR and nDCG@10, per backend and kind.

A retrieved chunk answers a query when its path is the answer's path and,
where the answer names a symbol, the chunk is that symbol (or a part of it: a
method of an answering class). Each answer counts once, at its best rank, so
three chunks of one function cannot fill the top five.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vots_rag.errors import RagError
from vots_rag.fusion import Weights
from vots_rag.index import BACKENDS, Backend, Index

KINDS = ("symbol", "natural", "architecture")
DEFAULT_QUERIES = Path(__file__).resolve().parent.parent / "eval" / "queries.yaml"


@dataclass(frozen=True)
class Answer:
    path: str
    symbol: str | None = None

    def matches(self, path: str, symbol: str | None) -> bool:
        if path != self.path:
            return False
        if self.symbol is None:
            return True
        return symbol is not None and (
            symbol == self.symbol or symbol.startswith(self.symbol + ".")
        )


@dataclass(frozen=True)
class Query:
    id: str
    kind: str
    query: str
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Scores:
    recall_at_5: float
    mrr: float
    ndcg_at_10: float
    n: int


@dataclass
class EvalReport:
    scores: dict[str, dict[str, Scores]] = field(
        default_factory=dict
    )  # backend -> kind|all -> scores
    misses: dict[str, list[str]] = field(
        default_factory=dict
    )  # backend -> ids with no answer in top 10
    median_ms: dict[str, float] = field(default_factory=dict)


def load_queries(path: Path = DEFAULT_QUERIES) -> list[Query]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RagError(f"{path}: {exc}", field="queries") from exc
    out: list[Query] = []
    for i, item in enumerate((data or {}).get("queries") or []):
        try:
            answers = tuple(Answer(a["path"], a.get("symbol")) for a in item["answers"])
            if item["kind"] not in KINDS or not answers:
                raise ValueError(f"kind must be one of {KINDS} and answers non-empty")
            out.append(Query(str(item["id"]), item["kind"], str(item["query"]), answers))
        except (KeyError, TypeError, ValueError) as exc:
            raise RagError(f"{path}: queries[{i}]: {exc}", field="queries") from exc
    if not out:
        raise RagError(f"{path}: no queries", field="queries")
    return out


def rank_answers(hits: Sequence[tuple[str, str | None]], answers: Sequence[Answer]) -> list[int]:
    """1-based ranks at which distinct answers first appear in ``hits``."""
    found: dict[int, int] = {}
    for rank, (path, symbol) in enumerate(hits, start=1):
        for i, answer in enumerate(answers):
            if i not in found and answer.matches(path, symbol):
                found[i] = rank
                break
    return sorted(found.values())


def score_query(ranks: Sequence[int], n_answers: int) -> tuple[float, float, float]:
    recall = sum(1 for r in ranks if r <= 5) / n_answers
    mrr = 1.0 / ranks[0] if ranks else 0.0
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= 10)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_answers, 10) + 1))
    return recall, mrr, dcg / ideal


def _mean(rows: list[tuple[float, float, float]]) -> Scores:
    n = len(rows)
    if not n:
        return Scores(0.0, 0.0, 0.0, 0)
    return Scores(
        sum(r[0] for r in rows) / n, sum(r[1] for r in rows) / n, sum(r[2] for r in rows) / n, n
    )


def evaluate(
    index: Index,
    queries: Sequence[Query],
    backends: Sequence[Backend] = BACKENDS,
    weights: dict[str, Weights] | None = None,
    exclude: Sequence[str] = (),
) -> EvalReport:
    """Search every query with every backend and score the top 10.

    Hits in ``exclude`` (the labelled set itself, when it lies inside the indexed
    tree: it holds every query verbatim) are dropped before scoring.
    """
    report = EvalReport()
    dropped = set(exclude)
    runs: list[tuple[str, Backend, Literal["weighted", "rrf"]]] = [
        (b, b, "weighted") for b in backends
    ]
    if "hybrid" in backends:
        runs.append(("hybrid-rrf", "hybrid", "rrf"))  # the naive fusion, for comparison
    for name, backend, fusion in runs:
        rows: dict[str, list[tuple[float, float, float]]] = {k: [] for k in KINDS}
        misses: list[str] = []
        times: list[float] = []
        for q in queries:
            w = (weights or {}).get(q.kind)
            page = index.search(
                q.query, k=20 if dropped else 10, backend=backend, weights=w, fusion=fusion
            )
            times.append(page.seconds * 1000)
            kept = [
                (h.chunk.path, h.chunk.symbol) for h in page.hits if h.chunk.path not in dropped
            ]
            ranks = rank_answers(kept[:10], q.answers)
            if not ranks:
                misses.append(q.id)
            rows[q.kind].append(score_query(ranks, len(q.answers)))
        per_kind = {kind: _mean(r) for kind, r in rows.items()}
        per_kind["all"] = _mean([row for r in rows.values() for row in r])
        report.scores[name] = per_kind
        report.misses[name] = misses
        times.sort()
        report.median_ms[name] = times[len(times) // 2] if times else 0.0
    return report
