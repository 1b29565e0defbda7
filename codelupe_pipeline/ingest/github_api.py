"""A small GitHub REST client for repository search that honours GitHub's rate limits.

GitHub's documented rules: on a 403 or 429, wait `retry-after` seconds when that header is present; else,
when `x-ratelimit-remaining` is 0, wait until `x-ratelimit-reset` (UTC epoch seconds); else (a secondary rate
limit without a hint) wait at least a minute, growing exponentially. After a 200 with no requests left, the
next request waits for the reset instead of being refused. A wait longer than `max_wait_seconds` is not
slept through: it raises `RateLimitedError` saying when to come back.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any

DEFAULT_API_URL = "https://api.github.com"
SEARCH_RESULT_LIMIT = 1000  # GitHub serves at most 1,000 results per search
PER_PAGE = 100
_NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


class GitHubApiError(RuntimeError):
    """A GitHub API request failed; the message says which request and what GitHub answered."""


class RateLimitedError(GitHubApiError):
    """The rate limit asks for a longer wait than this run may spend."""


@dataclass(frozen=True)
class RateLimitWait:
    status: int
    seconds: float
    reason: str


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    total_count: int
    incomplete: bool


@dataclass
class GitHubClient:
    api_url: str = DEFAULT_API_URL
    token: str | None = None
    max_wait_seconds: float = 900.0
    max_attempts: int = 6
    timeout_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    waits: list[RateLimitWait] = field(default_factory=list)
    requests: int = 0
    _exhausted_until: float = 0.0  # the budget reported by the last response ran out until then

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "codelupe-pipeline",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _wait(self, status: int, seconds: float, reason: str) -> None:
        seconds = max(seconds, 0.0)
        if seconds > self.max_wait_seconds:
            until = datetime.fromtimestamp(self.clock() + seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            hint = "" if self.token else "; set GITHUB_TOKEN for a higher limit"
            raise RateLimitedError(
                f"GitHub rate limit ({reason}): next request allowed at {until}, in {seconds:.0f} s, more than "
                f"the {self.max_wait_seconds:.0f} s this run may wait{hint}"
            )
        self.waits.append(RateLimitWait(status, seconds, reason))
        self.sleep(seconds)

    def _rate_limit_wait(self, headers: Message, message: str, attempt: int) -> tuple[float, str] | None:
        """How long GitHub asks us to wait after a 403/429, or None when it is not a rate limit."""
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return float(retry_after), "retry-after"
            except ValueError:
                pass
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                reset = self.clock() + 60
            return reset - self.clock() + 1, "primary limit exhausted until x-ratelimit-reset"
        if "rate limit" in message.lower():
            return 60.0 * 2**attempt, "secondary limit, no retry-after: exponential backoff"
        return None

    def _note_budget(self, headers: Message) -> None:
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                self._exhausted_until = float(headers["x-ratelimit-reset"]) + 1
            except ValueError:
                pass

    def get(self, url: str) -> tuple[Any, Message]:
        """GET an absolute URL or a path under the API; returns (parsed JSON, response headers)."""
        if not url.startswith(("http://", "https://")):
            url = self.api_url.rstrip("/") + "/" + url.lstrip("/")
        for attempt in range(self.max_attempts):
            if self._exhausted_until > self.clock():
                self._wait(200, self._exhausted_until - self.clock(), "no requests left until x-ratelimit-reset")
            self.requests += 1
            request = urllib.request.Request(url, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    body = response.read()
                    headers = response.headers
            except urllib.error.HTTPError as exc:
                headers, message = exc.headers, _message(exc.read())
                if exc.code in (403, 429):
                    wait = self._rate_limit_wait(headers, message, attempt)
                    if wait is not None:
                        self._wait(exc.code, *wait)
                        continue
                if exc.code >= 500:
                    self._wait(exc.code, 2.0**attempt, f"server error {exc.code}")
                    continue
                if exc.code == 401:
                    raise GitHubApiError(f"GET {url}: 401 bad credentials; check the token in GITHUB_TOKEN") from None
                raise GitHubApiError(f"GET {url}: {exc.code} {message}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise GitHubApiError(
                    f"GET {url}: cannot reach {self.api_url} ({reason}); is the machine online?"
                ) from None
            self._note_budget(headers)
            try:
                return json.loads(body), headers
            except json.JSONDecodeError as exc:
                raise GitHubApiError(f"GET {url}: the answer is not JSON ({exc})") from None
        raise GitHubApiError(f"GET {url}: still refused after {self.max_attempts} attempts")

    def search_repositories(self, query: str, sort: str = "stars", limit: int = 100) -> Iterator[SearchPage]:
        """Pages of repository search results, following `Link: rel="next"` until `limit` results."""
        params = {"q": query, "per_page": str(min(PER_PAGE, limit))}
        if sort != "best-match":
            params.update(sort=sort, order="desc")
        url: str | None = "search/repositories?" + urllib.parse.urlencode(params)
        served = 0
        while url and served < min(limit, SEARCH_RESULT_LIMIT):
            data, headers = self.get(url)
            if not isinstance(data, dict) or not isinstance(data.get("items"), list):
                raise GitHubApiError(f"GET {url}: unexpected answer (no `items` list)")
            items = data["items"][: limit - served]
            served += len(items)
            yield SearchPage(items, int(data.get("total_count", 0)), bool(data.get("incomplete_results")))
            url = _next_link(headers)


def _next_link(headers: Mapping[str, str] | Message) -> str | None:
    match = _NEXT_LINK.search(headers.get("link") or "")
    return match.group(1) if match else None


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("message", body[:200])) if isinstance(data, dict) else str(data)[:200]
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace")
