"""GitHub discovery against a real loopback HTTP server that replays recorded API responses, rate limits included."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from codelupe_pipeline.assets.ingestion import SOURCES, github_repositories, raw_code_files
from codelupe_pipeline.automation.jobs import build_gpu_jobs, discover_github_job
from codelupe_pipeline.automation.run_once import run_pipeline_once
from codelupe_pipeline.automation.sources_sensor import build_sources_sensor
from codelupe_pipeline.definitions import build_definitions
from codelupe_pipeline.ingest.discovery import discover, gate_reason
from codelupe_pipeline.ingest.github_api import GitHubApiError, GitHubClient, RateLimitedError
from codelupe_pipeline.ingest.sources import DiscoveredRepo, GitHubDiscovery, RepoGate, load_catalog
from codelupe_pipeline.settings import Settings
from codelupe_pipeline_tests.corpus import GO_FILE, MIT_LICENSE, RUST_FILE, make_git_repo, write_files
from codelupe_pipeline_tests.github_server import GitHubReplay, Route, github_replay, query_has

SEARCHES = {
    "searches": [
        {"name": "rust-async", "language": "rust", "topics": ["async"], "min_stars": 5, "max_repos": 6},
        {"name": "go-cache", "language": "go", "topics": ["cache"], "min_stars": 5},
        {"name": "broken", "query": "repo:nobody/nothing"},
    ],
    "gate": {"min_stars": 10, "min_forks": 3},
}


def replay_of_three_searches(clone_urls: dict[str, str] | None = None) -> GitHubReplay:
    """Rust: a primary rate limit first, then two pages. Go: a secondary rate limit first. A 422 for `broken`."""
    return GitHubReplay(
        routes=[
            Route(query_has("language:rust", page="1"), ["rate_limited.json", "rust_page1.json"]),
            Route(query_has("language:rust", page="2"), ["rust_page2.json"]),
            Route(query_has("language:go"), ["secondary_rate_limit.json", "go_page1.json"]),
            Route(query_has("repo:nobody/nothing"), ["validation_failed.json"]),
        ],
        clone_urls=clone_urls or {},
    )


def test_client_waits_out_a_primary_rate_limit_and_follows_pages() -> None:
    replay = GitHubReplay([Route(query_has("language:rust", page="1"), ["rate_limited.json", "rust_page1.json"]),
                           Route(query_has("language:rust", page="2"), ["rust_page2.json"])])  # fmt: skip
    with github_replay(replay):
        client = GitHubClient(api_url=replay.base_url, token="s3cret")
        started = time.time()
        pages = list(client.search_repositories("language:rust topic:async stars:>=5", limit=6))
    first, retry, page2 = replay.requests
    # The 403 said: no requests left until x-ratelimit-reset (one second ahead). The retry came after it.
    assert retry.at - first.at >= 1.0 and time.time() - started < 10
    assert [(w.status, w.reason) for w in client.waits] == [(403, "primary limit exhausted until x-ratelimit-reset")]
    assert [len(p.items) for p in pages] == [3, 3] and pages[0].total_count == 6
    assert page2.query["page"] == "2"  # followed the Link header
    assert first.query == {
        "q": "language:rust topic:async stars:>=5",
        "per_page": "6",
        "sort": "stars",
        "order": "desc",
    }
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.headers["x-github-api-version"] == "2022-11-28"


def test_client_refuses_long_waits_and_non_rate_limit_errors() -> None:
    replay = GitHubReplay(
        [
            Route(query_has("hour"), ["rate_limited_for_an_hour.json"]),
            Route(query_has("secondary"), ["secondary_no_retry_after.json"]),
            Route(query_has("forbidden"), ["forbidden.json"]),
            Route(query_has("invalid"), ["validation_failed.json"]),
        ]
    )
    with github_replay(replay):
        client = GitHubClient(api_url=replay.base_url, max_wait_seconds=5)
        with pytest.raises(RateLimitedError, match=r"in 360\d s, more than the 5 s.*set GITHUB_TOKEN"):
            list(client.search_repositories("hour"))
        # A secondary limit without retry-after: at least a minute, which this client may not wait.
        with pytest.raises(RateLimitedError, match="secondary limit"):
            list(client.search_repositories("secondary"))
        with pytest.raises(GitHubApiError, match="403 Resource not accessible"):
            list(client.search_repositories("forbidden"))
        with pytest.raises(GitHubApiError, match="422 Validation Failed"):
            list(client.search_repositories("invalid"))
    assert client.waits == [] and len(replay.requests) == 4  # nothing slept through, nothing retried
    with pytest.raises(GitHubApiError, match=r"cannot reach http://127\.0\.0\.1:9"):
        GitHubClient(api_url="http://127.0.0.1:9").get("search/repositories?q=x")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"stars": 9}, "stars<10"),
        ({"forks": 2}, "forks<3"),
        ({"description": "Examples for the async book"}, "word:example"),
        ({"full_name": "someone/demo_app"}, "word:demo"),
        ({"full_name": "someone/templates"}, "word:template"),
        ({"description": "A templating engine"}, None),  # a word, not a substring
        ({"fork": True}, "fork"),
        ({"archived": True}, "archived"),
        ({"size_kb": 3_000_000}, "size>2000MB"),
    ],
)
def test_repo_gate(changes: dict[str, object], reason: str | None) -> None:
    repo = DiscoveredRepo(full_name="acme/cache", clone_url="x", stars=10, forks=3, description="An LRU cache")
    assert gate_reason(repo.model_copy(update=changes), RepoGate()) == reason


def test_discovery_is_sticky_and_follows_the_configuration() -> None:
    config = GitHubDiscovery.model_validate(SEARCHES)
    with github_replay(replay_of_three_searches()) as replay:
        client = GitHubClient(api_url=replay.base_url, max_wait_seconds=30)
        first = discover(client, config, [], "2026-01-01")
        assert [r.full_name for r in first.repos] == [
            "acme-corp/ttl-cache",
            "ferris-labs/ring-buffer",
            "tokio-rs/mini-redis",
        ]
        assert dict(first.rejected) == {
            "word:tutorial": 1,
            "stars<10": 1,
            "fork": 1,
            "archived": 1,
            "template_repository": 1,
        }
        assert [s.error is not None for s in first.searches] == [False, False, True]
        assert "422 Validation Failed" in str(first.searches[2].error)
        assert [w.status for w in client.waits] == [403, 429]

        # Later: the rust search fails; what it found stays. A tighter gate drops what it now rejects, and a
        # removed search drops what only it found.
        replay.routes[:2] = [Route(query_has("language:rust"), ["validation_failed.json"])]
        tighter = GitHubDiscovery.model_validate(
            {**SEARCHES, "searches": SEARCHES["searches"][:2], "gate": {"min_stars": 200, "min_forks": 3}}
        )
        second = discover(client, tighter, first.repos, "2026-02-01")
    assert [r.full_name for r in second.repos] == ["acme-corp/ttl-cache", "tokio-rs/mini-redis"]
    assert second.dropped == [("ferris-labs/ring-buffer", "stars<200")]
    kept = {r.full_name: r for r in second.repos}
    assert kept["tokio-rs/mini-redis"].first_seen == "2026-01-01"  # not seen again: last_seen stays
    assert kept["acme-corp/ttl-cache"].last_seen == "2026-02-01"
    without_go = GitHubDiscovery.model_validate({**SEARCHES, "searches": SEARCHES["searches"][:1]})
    with github_replay(GitHubReplay([Route(query_has("language:rust"), ["validation_failed.json"])])) as replay:
        third = discover(GitHubClient(api_url=replay.base_url), without_go, second.repos, "2026-03-01")
    assert third.dropped == [("acme-corp/ttl-cache", "search removed")]


def test_discovered_repositories_become_partitions_and_are_ingested(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repos = tmp_path / "remote"
    make_git_repo(repos / "mini-redis", {"LICENSE": MIT_LICENSE, "src/ring.rs": RUST_FILE})
    make_git_repo(repos / "ring-buffer", {"src/lib.rs": RUST_FILE.replace("Ring", "Buffer")})
    make_git_repo(repos / "ttl-cache", {"cache.go": GO_FILE})
    clone_urls = {
        "tokio-rs/mini-redis": (repos / "mini-redis").as_uri(),
        "ferris-labs/ring-buffer": (repos / "ring-buffer").as_uri(),
        "acme-corp/ttl-cache": (repos / "ttl-cache").as_uri(),
    }
    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(
        yaml.safe_dump(
            {
                "sources": [  # a declared source overrides the discovered one of the same name
                    {"name": "github.acme-corp.ttl-cache", "kind": "git", "url": clone_urls["acme-corp/ttl-cache"],
                     "license": "MIT"},
                ],
                "github": SEARCHES,
            }
        )
    )  # fmt: skip
    monkeypatch.setenv("GITHUB_TOKEN", "from-the-environment")
    with github_replay(replay_of_three_searches(clone_urls)) as replay:
        settings = Settings(data_dir=tmp_path / "data", sources_file=sources_file, github_api_url=replay.base_url)
        defs = build_definitions(settings)
        with dg.instance_for_test() as instance:
            found = dg.materialize([github_repositories], resources=defs.resources, instance=instance)
            assert found.success
            meta = found.asset_materializations_for_node("github_repositories")[0].metadata
            assert meta["dagster/row_count"].value == 3 and meta["searches_failed"].value == 1
            assert meta["rate_limit_waits"].value == 2 and meta["rate_limit_wait_seconds"].value >= 2
            assert all(r.headers["authorization"] == "Bearer from-the-environment" for r in replay.requests)

            catalog = load_catalog(sources_file, settings.discovered_sources_file)
            assert catalog.names == [
                "github.acme-corp.ttl-cache",  # the declared one, with its licence override
                "github.ferris-labs.ring-buffer",
                "github.tokio-rs.mini-redis",
            ]
            assert catalog.discovered == {"github.ferris-labs.ring-buffer", "github.tokio-rs.mini-redis"}

            # The sources sensor gives each a partition and requests one ingestion run over the new ones.
            sensor = build_sources_sensor("ingest_and_curate")
            context = dg.build_sensor_context(instance=instance, resources={"sources": defs.resources["sources"]})
            tick = sensor(context)
            assert isinstance(tick, dg.SensorResult)
            (add,) = tick.dynamic_partitions_requests
            assert list(add.partition_keys) == catalog.names
            instance.add_dynamic_partitions(SOURCES, list(add.partition_keys))
            (request,) = tick.run_requests
            ingested = dg.materialize([raw_code_files], resources=defs.resources, instance=instance, tags=request.tags)
            assert ingested.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT source, path, license, stars, forks FROM raw_files ORDER BY source").fetchall()
    assert rows == [
        ("github.acme-corp.ttl-cache", "cache.go", "MIT", None, None),
        ("github.ferris-labs.ring-buffer", "src/lib.rs", None, 120, 12),
        ("github.tokio-rs.mini-redis", "src/ring.rs", "MIT", 4391, 512),  # licence from its LICENSE file
    ]


def test_codelupe_run_discovers_then_ingests_every_source_and_retires_removed_ones(tmp_path: Path) -> None:
    """`run_pipeline_once` (what `codelupe run` does) on the ingestion part of the graph."""
    make_git_repo(tmp_path / "ttl-cache", {"cache.go": GO_FILE})
    write_files(tmp_path / "mine", {"ring.rs": RUST_FILE})
    sources_file = tmp_path / "sources.yaml"
    mine = {"name": "mine", "kind": "local", "path": str(tmp_path / "mine")}
    go_search = {"searches": [{"name": "go-cache", "language": "go", "topics": ["cache"]}]}
    sources_file.write_text(yaml.safe_dump({"sources": [mine], "github": go_search}))
    replay = GitHubReplay(
        [Route(query_has("language:go"), ["go_page1.json"])],
        clone_urls={"acme-corp/ttl-cache": (tmp_path / "ttl-cache").as_uri()},
    )
    with github_replay(replay), dg.instance_for_test() as instance:
        settings = Settings(data_dir=tmp_path / "data", sources_file=sources_file, github_api_url=replay.base_url)
        full = build_definitions(settings)
        defs = dg.Definitions(  # ingestion only: the same jobs select just these assets here
            assets=[github_repositories, raw_code_files],
            jobs=[discover_github_job, build_gpu_jobs()[0]],
            resources=full.resources,
        )
        first = run_pipeline_once(defs, instance, {})
        assert first.discovery is not None and first.discovery.success and first.result.success
        assert first.partitions == ["mine", "github.acme-corp.ttl-cache"]

        sources_file.write_text(yaml.safe_dump({"sources": [], "github": go_search}))  # `mine` removed
        second = run_pipeline_once(defs, instance, {})
        assert second.result.success and second.deleted_partitions == ["mine"]
        assert list(instance.get_dynamic_partitions(SOURCES)) == ["github.acme-corp.ttl-cache"]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        rows = con.execute("SELECT source, path, status, stars FROM raw_files ORDER BY source").fetchall()
    assert rows == [("github.acme-corp.ttl-cache", "cache.go", "current", 301), ("mine", "ring.rs", "removed", None)]
