"""Who is compared with whom, and the report the promotion gate reads.

A candidate is scored next to its base model and the current champion, all under the same evaluation
setup; this module builds those subjects (downloading the champion's adapter from MLflow when needed) and
turns an evaluation run into an `EvaluationReport`: the scores of each, and what could not be scored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from codelupe_pipeline.evaluate.evaluation import BenchmarkSummary, EvaluationRun, Subject, model_fingerprint
from codelupe_pipeline.registry.mlflow_store import ADAPTER_ARTIFACT_PATH, CHAMPION, ModelRegistry, VersionInfo
from codelupe_pipeline.registry.promotion import higher_is_better

log = logging.getLogger(__name__)


def base_subject(location: str) -> Subject:
    return Subject(f"base:{model_fingerprint(location)}", "base model", location, None, cacheable=True)


def version_subject(version: str, label: str, base_location: str, adapter_dir: str, cacheable: bool) -> Subject:
    return Subject(f"version:{version}", f"{label} v{version}", base_location, adapter_dir, cacheable)


def adapter_base_model(adapter_dir: Path) -> str | None:
    """The base model PEFT recorded when it saved the adapter."""
    config = adapter_dir / "adapter_config.json"
    if not config.exists():
        return None
    return json.loads(config.read_text()).get("base_model_name_or_path") or None


def registered_subject(
    registry: ModelRegistry, champion: VersionInfo, cache_dir: Path, label: str = "champion", cacheable: bool = True
) -> Subject:
    """A registered version as a subject: its base model (from its tags) and its adapter, downloaded once from
    MLflow. Raises with the reason when either cannot be found."""
    target = cache_dir / f"v{champion.version}"
    adapter = target / ADAPTER_ARTIFACT_PATH
    if not (adapter / "adapter_config.json").exists():
        registry.download_adapter(champion.version, target)
    base = champion.tags.get("base_model") or adapter_base_model(adapter)
    if not base:
        raise RuntimeError(f"version {champion.version} records no base model")
    if base.startswith(("/", ".", "~")) and not Path(base).expanduser().exists():
        raise RuntimeError(f"its base model {base} is no longer on this machine")
    return version_subject(champion.version, label, base, str(adapter), cacheable)


@dataclass
class Plan:
    """The subjects of one evaluation: the candidate, its base model, the champion (or why not)."""

    candidate: Subject
    base: Subject | None
    champion: VersionInfo | None
    champion_subject: Subject | None
    champion_error: str | None

    @property
    def subjects(self) -> list[Subject]:
        return [s for s in (self.candidate, self.base, self.champion_subject) if s is not None]


def plan(
    candidate: Subject,
    registry: ModelRegistry,
    adapters_cache: Path,
    compare_with_base: bool = True,
    rescore_champion: bool = True,
) -> Plan:
    champion = registry.alias(CHAMPION)
    base = base_subject(candidate.base_location) if compare_with_base else None
    subject, error = None, None
    if champion is not None and candidate.key != f"version:{champion.version}":
        if not rescore_champion:
            error = "re-scoring the champion is switched off (rescore_champion)"
        else:
            try:
                subject = registered_subject(registry, champion, adapters_cache)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(f"champion v{champion.version} cannot be re-scored: {error}")
    return Plan(candidate, base, champion, subject, error)


@dataclass
class EvaluationReport:
    """What the evaluation hands the promotion gate: every score comes from one evaluation setup."""

    candidate_version: str
    candidate_scores: dict[str, float]
    base_scores: dict[str, float] | None
    champion_version: str | None
    champion_scores: dict[str, float] | None
    champion_error: str | None
    benchmarks: list[BenchmarkSummary] = field(default_factory=list)
    isolation: str = ""
    isolation_warning: str = ""
    cache_keys: dict[str, str] = field(default_factory=dict)

    @property
    def champion_label(self) -> str:
        return f"champion v{self.champion_version}" if self.champion_version else "the champion"


def build_report(run: EvaluationRun, plan: Plan, version: str) -> EvaluationReport:
    champion_result = run.results.get(plan.champion_subject.key) if plan.champion_subject else None
    champion_error = plan.champion_error
    if champion_result is not None and champion_result.error:
        champion_error = champion_result.error
    return EvaluationReport(
        candidate_version=version,
        candidate_scores=dict(run.results[plan.candidate.key].metrics),
        base_scores=run.scores(plan.base.key) if plan.base is not None else None,
        champion_version=plan.champion.version if plan.champion else None,
        champion_scores=None if champion_error or champion_result is None else dict(champion_result.metrics),
        champion_error=champion_error,
        benchmarks=run.benchmarks,
        isolation=str(run.sandbox.get("isolation", "")),
        isolation_warning=str(run.sandbox.get("warning", "")),
        cache_keys={b.name: b.cache_key for b in run.benchmarks},
    )


def _delta(new: float, old: float | None, metric: str) -> str:
    if old is None:
        return ""
    diff = new - old
    better = (diff > 0) == higher_is_better(metric) if diff else None
    return f"{diff:+.4f}" + {True: " ▲", False: " ▼", None: ""}[better]


def comparison_header(report: EvaluationReport, candidate: str = "candidate") -> list[str]:
    champion = report.champion_label if report.champion_scores else "champion (not scored)"
    return ["metric", "base model", champion, candidate, "vs base", "vs champion"]


def comparison_rows(report: EvaluationReport) -> list[tuple[object, ...]]:
    """metric | base model | champion | candidate | vs base | vs champion (see comparison_header)."""
    base = report.base_scores or {}
    champion = report.champion_scores or {}
    return [
        (
            name,
            f"{base[name]:.4f}" if name in base else "",
            f"{champion[name]:.4f}" if name in champion else "",
            f"{value:.4f}",
            _delta(value, base.get(name), name),
            _delta(value, champion.get(name), name),
        )
        for name, value in sorted(report.candidate_scores.items())
    ]
