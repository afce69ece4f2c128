"""The lexical index: identifiers whole and split, updated in place."""

from __future__ import annotations

from vots_rag.fusion import query_kind, symbol_matches
from vots_rag.lexical import Lexical, split_identifier, tokens


def test_identifiers_are_indexed_whole_and_split() -> None:
    assert split_identifier("HTTPServerError") == ["http", "server", "error"]
    assert split_identifier("take_sample") == ["take", "sample"]
    got = tokens("def take_sample(db): return HistoryError")
    assert "take_sample" in got and "take" in got and "sample" in got
    assert "historyerror" in got and "history" in got and "error" in got


def test_a_definition_outranks_its_callers() -> None:
    lex = Lexical()
    lex.add("def", "def take_sample(db):\n    return db.read()", "take_sample", "ops/run.py")
    lex.add("call1", "x = take_sample(db)\ny = take_sample(db)", "caller", "ops/cli.py")
    lex.add("other", "def unrelated():\n    pass", "unrelated", "ops/misc.py")
    assert next(cid for cid, _ in lex.search("take_sample", 3)) == "def"


def test_changes_apply_in_place() -> None:
    lex = Lexical()
    lex.add("a", "rates from the previous sample", None, "a.py")
    lex.add("b", "something else entirely", None, "b.py")
    assert [c for c, _ in lex.search("previous rates", 5)] == ["a"]
    lex.add("a", "now about caching", None, "a.py")  # replaced
    assert lex.search("previous rates", 5) == []
    lex.remove(["a"])
    assert lex.search("caching", 5) == [] and len(lex) == 1


def test_query_kinds() -> None:
    assert query_kind("plan_stack") == "symbol"
    assert query_kind("History.record") == "symbol"
    assert query_kind("EngineError") == "symbol"
    assert query_kind("caching") == "natural"
    assert query_kind("where are rates computed") == "natural"
    assert symbol_matches("record", "History.record")
    assert symbol_matches("History.record", "History.record")
    assert not symbol_matches("record", "History.recorder")
