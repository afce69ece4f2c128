"""Which files are indexed: .gitignore honoured, binaries, generated and huge files skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vots_rag.errors import RagError
from vots_rag.walk import WalkStats, inside, walk


def _walk(root: Path, start: Path | None = None, **kw: int) -> tuple[list[str], WalkStats]:
    stats = WalkStats()
    files = walk(
        root,
        start or root,
        max_bytes=kw.get("max_bytes", 100_000),
        max_files=kw.get("max_files", 1000),
        stats=stats,
    )
    return [f.rel for f in files], stats


def test_the_sample_tree(tree: Path) -> None:
    rels, stats = _walk(tree)
    assert rels == [
        "README.md",
        "ops/proc.py",
        "ops/report/rates.py",
        "ops/units.py",
        ".gitignore",
    ] or sorted(rels) == sorted(
        ["README.md", "ops/proc.py", "ops/report/rates.py", "ops/units.py", ".gitignore"]
    )
    assert stats.skipped.get("binary") == 1  # logo.png
    assert stats.skipped.get("generated") == 1  # gen_pb2.py
    assert stats.skipped.get("ignored") == 1  # debug.log; secret/ is not even entered


def test_nested_gitignore_and_negation(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("*.tmp\n")
    (tmp_path / "a" / ".gitignore").write_text("build/\n!keep.tmp\n")
    (tmp_path / "a" / "x.tmp").write_text("x\n")
    (tmp_path / "a" / "keep.tmp").write_text("kept\n")
    (tmp_path / "a" / "build").mkdir()
    (tmp_path / "a" / "build" / "out.py").write_text("x = 1\n")
    (tmp_path / "a" / "b" / "code.py").write_text("y = 2\n")
    rels, _ = _walk(tmp_path)
    assert sorted(rels) == [".gitignore", "a/.gitignore", "a/b/code.py", "a/keep.tmp"]
    # Starting below the root still applies the .gitignore files above.
    rels, _ = _walk(tmp_path, tmp_path / "a")
    assert "a/x.tmp" not in rels and "a/keep.tmp" in rels


def test_huge_and_minified_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = 1\n" * 50_000)
    (tmp_path / "app.js").write_text("var a=1;" * 5000)
    (tmp_path / "ok.py").write_text("x = 1\n")
    rels, stats = _walk(tmp_path, max_bytes=100_000)
    assert rels == ["ok.py"]
    assert stats.skipped == {"too large": 1, "minified": 1}


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("PASSWORD = 1\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file.py").symlink_to(outside / "secret.py")
    rels, stats = _walk(root)
    assert rels == []
    assert stats.skipped["symlink"] == 2


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    for bad in ("..", "../root2", "/etc", "a/../../x"):
        with pytest.raises(RagError) as err:
            inside(tmp_path / "root", bad)
        assert err.value.field == "path" and err.value.status == 403
    os.symlink("/etc", tmp_path / "root" / "etc")
    with pytest.raises(RagError):
        inside(tmp_path / "root", "etc")
    assert inside(tmp_path / "root", ".") == (tmp_path / "root").resolve()


def test_too_many_files_is_refused(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.py").write_text("x = 1\n")
    with pytest.raises(RagError) as err:
        _walk(tmp_path, max_files=3)
    assert err.value.status == 413
