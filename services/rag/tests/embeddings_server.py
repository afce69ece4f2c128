"""A real OpenAI-compatible ``/v1/embeddings`` server for the tests, run by uvicorn.

It embeds with the same local model (so results are meaningful), checks the
bearer key, and can be told to fail (``POST /fail`` with a count): the
faults an endpoint really has, served over real HTTP.
"""

from __future__ import annotations

import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from vots_rag.model import LocalEmbedder


def build(key: str) -> FastAPI:
    app = FastAPI()
    model = LocalEmbedder(threads=1)
    state = {"fail": 0, "calls": 0, "inputs": 0}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        if request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        state["calls"] += 1
        if state["fail"] > 0:
            state["fail"] -= 1
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        texts = body["input"]
        state["inputs"] += len(texts)
        vectors = model.embed(texts)
        return {
            "object": "list",
            "model": body["model"],
            "data": [
                {"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vectors)
            ],
        }

    @app.post("/fail")
    async def fail(request: Request) -> Any:
        state["fail"] = int((await request.json())["count"])
        return state

    @app.get("/state")
    async def get_state() -> Any:
        return state

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
