"""Fixtures for the judging tests: the judging settings, and a fake OpenAI-compatible
chat-completions server on loopback (the outside world; nothing of ours is faked)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def judging_settings(settings: Any, tmp_path: Any) -> Any:
    settings.PREFLAB_JUDGE_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.PREFLAB_JUDGE_CALLABLE_MODULES = ["judging.checks", "tests.judging"]
    settings.PREFLAB_JUDGE_MODELS_DIR = tmp_path / "judge-models"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    return settings


# (status, headers, body: dict or str, delay seconds before answering)
Reply = tuple[int, dict[str, str], Any, float]


@dataclass
class FakeOpenAI:
    url: str
    reply: Callable[[dict[str, Any], int], Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_A = re.compile(r"\[Response A\]\n(.*?)\n\n\[Response B\]", re.S)
_B = re.compile(r"\[Response B\]\n(.*?)\n\nWhich", re.S)


def shown(body: dict[str, Any]) -> tuple[str, str]:
    """The two responses as the default rubric showed them (first, second)."""
    content = body["messages"][-1]["content"]
    first, second = _A.search(content), _B.search(content)
    assert first and second, content
    return first.group(1), second.group(1)


def completion(content: str, tokens: int = 30) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "judge-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": tokens - 5, "completion_tokens": 5, "total_tokens": tokens},
    }


def knows_the_answer(body: dict[str, Any], count: int) -> Reply:
    """Picks the right sum (the response without "I think") in whatever order it is shown."""
    first, _second = shown(body)
    verdict = "[[B]]" if "I think" in first else "[[A]]"
    return 200, {}, completion(f"The other one hedges. {verdict}"), 0.0


@pytest.fixture
def fake_openai() -> Iterator[Callable[[Callable[[dict[str, Any], int], Reply]], FakeOpenAI]]:
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Callable[[dict[str, Any], int], Reply]) -> FakeOpenAI:
        state = FakeOpenAI(url="", reply=reply)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with state.lock:
                    count = len(state.requests)
                    state.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "authorization": self.headers.get("Authorization", ""),
                            "host": self.headers.get("Host", ""),
                            "at": time.monotonic(),
                        }
                    )
                status, headers, payload, delay = state.reply(body, count)
                if delay:
                    time.sleep(delay)  # the fake endpoint's latency
                data = payload if isinstance(payload, str) else json.dumps(payload)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data.encode())))
                    self.end_headers()
                    self.wfile.write(data.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
