"""A real HTTP server on loopback that plays recorded GitHub API responses (fixtures/github/*.json)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "github"
Query = Mapping[str, str]


@dataclass
class Route:
    """Requests whose query matches get the next fixture of `replies`; the last one keeps being served."""

    matches: Callable[[Query], bool]
    replies: list[str]


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class GitHubReplay:
    routes: list[Route]
    clone_urls: Mapping[str, str] = field(default_factory=dict)  # owner/name -> URL of a local repository
    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)

    def render(self, name: str) -> tuple[int, dict[str, str], bytes]:
        text = (FIXTURES / name).read_text()
        now = int(time.time())
        text = re.sub(r"\{\{reset\+(\d+)\}\}", lambda m: str(now + int(m.group(1))), text)
        text = text.replace("{{base}}", self.base_url)
        text = re.sub(
            r"\{\{clone:([^}]+)\}\}",
            lambda m: self.clone_urls.get(m.group(1), f"file:///nonexistent/{m.group(1)}"),
            text,
        )
        data = json.loads(text)
        return data["status"], data["headers"], json.dumps(data["body"]).encode()

    def reply(self, query: Query) -> tuple[int, dict[str, str], bytes]:
        for route in self.routes:
            if route.matches(query):
                name = route.replies.pop(0) if len(route.replies) > 1 else route.replies[0]
                return self.render(name)
        return 404, {"content-type": "application/json"}, b'{"message": "Not Found"}'


@contextmanager
def github_replay(replay: GitHubReplay) -> Iterator[GitHubReplay]:
    """Serve `replay` on 127.0.0.1 (a free port) in a thread for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            replay.requests.append(
                RecordedRequest(parsed.path, query, {k.lower(): v for k, v in self.headers.items()}, time.time())
            )
            if parsed.path != "/search/repositories":
                status, headers, body = 404, {"content-type": "application/json"}, b'{"message": "Not Found"}'
            else:
                status, headers, body = replay.reply(query)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    replay.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield replay
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def query_has(*words: str, page: str = "1") -> Callable[[Query], bool]:
    return lambda q: all(w in q.get("q", "") for w in words) and q.get("page", "1") == page
