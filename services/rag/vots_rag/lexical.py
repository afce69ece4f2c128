"""BM25 over code tokens, updated in place: a changed file is searchable at once.

Identifiers are indexed whole and split (``take_sample`` → ``take_sample``,
``take``, ``sample``; ``HistoryError`` → ``historyerror``, ``history``,
``error``), so a symbol query matches its definition exactly and a
natural-language query matches the words inside names. A light suffix
stemmer (``rates`` → ``rate``) and a short stop-word list serve the
natural-language side. A chunk's symbol and path are indexed as extra fields
(the symbol weighted up): the place that defines a name outranks the places
that merely use it.

An inverted index in dicts rather than a library (``bm25s`` rebuilds its
matrices on every change): adding or removing one chunk touches only its own
postings.
"""

from __future__ import annotations

import heapq
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "can",
        "should",
        "would",
        "will",
        "into",
        "there",
        "their",
        "them",
        "then",
        "than",
        "these",
        "those",
        "we",
        "you",
        "your",
        "get",
        "gets",
    ]
)
SYMBOL_WEIGHT = 3
K1 = 1.2
B = 0.75


def stem(word: str) -> str:
    """A deliberately small stemmer: plural and common verb endings only."""
    if len(word) <= 4:
        return word
    for suffix, keep in (
        ("ies", "y"),
        ("sses", "ss"),
        ("ing", ""),
        ("ed", ""),
        ("es", ""),
        ("s", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: len(word) - len(suffix)] + keep
    return word


def split_identifier(word: str) -> list[str]:
    """``snake_case`` and ``CamelCase`` parts, lowercased."""
    parts: list[str] = []
    for piece in word.split("_"):
        if piece:
            parts.extend(p.lower() for p in CAMEL.findall(piece))
    return parts


def tokens(text: str) -> list[str]:
    """Index terms of ``text``: whole identifiers and their stemmed parts, no stop words."""
    out: list[str] = []
    for word in WORD.findall(text):
        lower = word.lower()
        parts = split_identifier(word)
        if len(parts) > 1:
            out.append(lower)
            out.extend(stem(p) for p in parts if p not in STOP)
        elif lower not in STOP:
            out.append(stem(lower))
    return out


def query_terms(query: str) -> list[str]:
    """Terms of a query; repeated terms count once."""
    return list(dict.fromkeys(tokens(query)))


class Lexical:
    """An incremental BM25 index of chunk ids → (body, symbol, path) text."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[str, int]] = {}
        self._terms: dict[str, Counter[str]] = {}
        self._lengths: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._lengths

    @staticmethod
    def terms_of(body: str, symbol: str | None, path: str) -> Counter[str]:
        counts = Counter(tokens(body))
        if symbol:
            for term in tokens(symbol.replace(".", " ")):
                counts[term] += SYMBOL_WEIGHT
        for term in tokens(path.replace("/", " ").replace(".", " ")):
            counts[term] += 1
        return counts

    def add(self, chunk_id: str, body: str, symbol: str | None, path: str) -> None:
        counts = self.terms_of(body, symbol, path)
        with self._lock:
            if chunk_id in self._terms:
                self._remove_locked(chunk_id)
            self._terms[chunk_id] = counts
            length = sum(counts.values())
            self._lengths[chunk_id] = length
            self._total += length
            for term, tf in counts.items():
                self._postings.setdefault(term, {})[chunk_id] = tf

    def remove(self, chunk_ids: Iterable[str]) -> None:
        with self._lock:
            for chunk_id in chunk_ids:
                if chunk_id in self._terms:
                    self._remove_locked(chunk_id)

    def _remove_locked(self, chunk_id: str) -> None:
        counts = self._terms.pop(chunk_id)
        self._total -= self._lengths.pop(chunk_id)
        for term in counts:
            posting = self._postings.get(term)
            if posting is not None:
                posting.pop(chunk_id, None)
                if not posting:
                    del self._postings[term]

    def search(self, query: str, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best (chunk id, BM25 score) pairs, best first."""
        terms = query_terms(query)
        with self._lock:
            n = len(self._lengths)
            if not n or not terms:
                return []
            avg = self._total / n
            scores: dict[str, float] = {}
            for term in terms:
                posting = self._postings.get(term)
                if not posting:
                    continue
                df = len(posting)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                lengths = self._lengths
                norm = K1 * (1 - B) / 1.0
                scale = K1 * B / avg
                for chunk_id, tf in posting.items():
                    denom = tf + norm + scale * lengths[chunk_id]
                    scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * (K1 + 1) / denom
        return heapq.nlargest(limit, scores.items(), key=lambda kv: kv[1])
