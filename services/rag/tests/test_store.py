"""The exact in-memory mirror of the vectors: what a dense search ranks."""

from __future__ import annotations

import numpy as np
from vots_rag.store import _BLOCK_ROWS, DenseMirror


def test_search_is_exact_across_row_blocks_and_removals() -> None:
    rng = np.random.default_rng(7)
    n, dim = 2 * _BLOCK_ROWS + 300, 64  # three row blocks, the last one partial
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(n)]
    mirror = DenseMirror(dim)
    mirror.add(ids, vectors)
    gone = {f"c{i}" for i in range(0, n, 7)}  # rows move when others are removed
    mirror.remove(gone)
    kept = [i for i in range(n) if f"c{i}" not in gone]
    query = vectors[kept[-1]]  # lives in the last block after the moves
    expected = sorted(kept, key=lambda i: -float(vectors[i] @ query))[:20]
    got = mirror.search(query, 20)
    assert [cid for cid, _ in got] == [f"c{i}" for i in expected]
    assert got[0][0] == f"c{kept[-1]}" and abs(got[0][1] - 1.0) < 1e-5
    assert len(mirror) == len(kept) and len(mirror.search(query, len(kept) + 5)) == len(kept)
