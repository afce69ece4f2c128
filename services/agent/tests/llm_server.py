"""An OpenAI-compatible chat endpoint for the tests (no model server exists on this
machine). The requested model picks its behaviour:

* ``good``: a JSON answer grounded in the prompt (it explains the first fingerprint
  it was given, and one it was not, which the agent must drop);
* ``slow``: answers after 30 s (past any timeout the tests set);
* ``notjson``: prose instead of the asked JSON;
* ``broken``: a 200 whose body has no ``choices``;
* ``error``: HTTP 500.

Run: ``python llm_server.py PORT``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b'{"ok": true}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length))
        model = req.get("model")
        auth = self.headers.get("Authorization", "")
        prompt = req["messages"][-1]["content"]
        if model == "slow":
            time.sleep(30)
        if model == "error":
            return self._send(500, b'{"error": "boom"}')
        if model == "broken":
            return self._send(200, b'{"id": "x", "object": "chat.completion"}')
        if model == "notjson":
            content = "Sure! Here are some thoughts about your code."
        else:
            fps = re.findall(r"fingerprint ([0-9a-f]{32})", prompt)
            content = (
                "```json\n"
                + json.dumps(
                    {
                        "summary": f"{len(fps)} findings reviewed; auth={'yes' if auth == 'Bearer sk-test' else 'no'}",
                        "fixes": [
                            {
                                "fingerprint": fps[0],
                                "explanation": "shell=True runs a shell",
                                "suggestion": "pass a list",
                            },
                            {
                                "fingerprint": "0" * 32,
                                "explanation": "invented",
                                "suggestion": "none",
                            },
                        ],
                    }
                )
                + "\n```"
            )
        doc = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": f"{model}-2026",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 50},
        }
        self._send(200, json.dumps(doc).encode())


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
