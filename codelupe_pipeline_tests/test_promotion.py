"""The promotion gate in every branch: the pure decision, then the registry asset on a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from codelupe_pipeline.assets.registry import NO_REGRESSION, PromotionConfig, primary_metric, registered_model_version
from codelupe_pipeline.assets.training import AdapterRef
from codelupe_pipeline.evaluate.evaluation import BenchmarkSummary
from codelupe_pipeline.evaluate.report import EvaluationReport
from codelupe_pipeline.registry.mlflow_store import CHALLENGER, CHAMPION, ModelRegistry
from codelupe_pipeline.registry.promotion import PromotionPolicy, decide
from codelupe_pipeline.resources import MlflowResource
from codelupe_pipeline.train.base_model import BaseModelRef

POLICY = PromotionPolicy(primary_metric="humaneval_pass_at_1", margin=0.01, tolerance=0.02)
BASE = {"humaneval_pass_at_1": 0.30, "your_stack_edit_similarity": 0.40, "your_stack_perplexity": 4.0}


def scores(pass_at_1: float, similarity: float = 0.5, ppl: float = 3.0) -> dict[str, float]:
    return {"humaneval_pass_at_1": pass_at_1, "your_stack_edit_similarity": similarity, "your_stack_perplexity": ppl}


# The decision alone


def test_first_version_is_promoted_when_not_worse_than_the_base_model() -> None:
    decision = decide(scores(0.31), None, BASE, POLICY)
    assert decision.promote and decision.reference == "the base model" and not decision.regressions
    assert "no champion yet" in decision.reason


def test_first_version_below_the_base_model_is_not_promoted() -> None:
    decision = decide(scores(0.20), None, BASE, POLICY)
    assert not decision.promote and "below the base model" in decision.reason
    assert any(r.startswith("humaneval_pass_at_1") for r in decision.regressions)


def test_first_version_without_a_base_score_is_promoted() -> None:
    assert decide(scores(0.0), None, None, POLICY).promote


def test_first_version_reports_other_regressions_against_the_base_model() -> None:
    decision = decide(scores(0.30, similarity=0.10), None, BASE, POLICY)
    assert decision.promote  # nothing serves yet: the primary metric decides
    assert decision.regressions == ("your_stack_edit_similarity 0.1000 < 0.4000 - 0.02",)


def test_a_real_win_over_the_champion_is_promoted() -> None:
    decision = decide(scores(0.40), scores(0.35), BASE, POLICY, "champion v1")
    assert decision.promote and "beats champion v1's 0.3500 (+0.0500)" in decision.reason


def test_a_gain_within_the_margin_is_not_promoted() -> None:
    decision = decide(scores(0.355), scores(0.35), BASE, POLICY, "champion v1")
    assert not decision.promote and "by more than the margin 0.01" in decision.reason
    assert not decision.regressions


def test_a_win_that_regresses_another_score_is_not_promoted() -> None:
    decision = decide(scores(0.45, similarity=0.40), scores(0.35, similarity=0.50), BASE, POLICY, "champion v1")
    assert not decision.promote and "regressed: your_stack_edit_similarity" in decision.reason
    assert decision.regressions == ("your_stack_edit_similarity 0.4000 < 0.5000 - 0.02",)


def test_perplexity_is_lower_is_better_and_relative() -> None:
    champion = scores(0.35, ppl=3.0)
    assert decide(scores(0.45, ppl=3.1), champion, BASE, POLICY).promote  # +3 %: within 5 %
    worse = decide(scores(0.45, ppl=3.3), champion, BASE, POLICY)  # +10 %
    assert not worse.promote and worse.regressions == ("your_stack_perplexity 3.3 > 3 + 5%",)
    assert decide(scores(0.45, ppl=1.0), champion, BASE, POLICY).promote  # lower is better


def test_a_drop_of_the_primary_metric_is_a_regression() -> None:
    decision = decide(scores(0.20), scores(0.35), BASE, POLICY)
    assert not decision.promote and decision.regressions[0].startswith("humaneval_pass_at_1 0.2000 < 0.3500")


def test_missing_scores_block_promotion() -> None:
    assert not decide({"mbpp_pass_at_1": 0.5}, None, None, POLICY).promote
    assert not decide(scores(0.5), {"mbpp_pass_at_1": 0.1}, BASE, POLICY).promote
    unscored = decide(scores(0.9), None, BASE, POLICY, "champion v1", champion_error="adapter gone")
    assert not unscored.promote and "could not be scored the same way" in unscored.reason


def test_policy_refuses_negative_margins() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        PromotionPolicy(margin=-0.1)


# The registry asset on a real MLflow store


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module (creating one costs seconds); each test has its own registered model."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def mlflow(mlflow_store: Path, request: pytest.FixtureRequest) -> MlflowResource:
    return MlflowResource(
        tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}",
        artifact_root=str(mlflow_store / "artifacts"),
        registered_model=f"codelupe-{request.node.name.replace('_', '-')[:60]}",
    )


def register(registry: ModelRegistry, name: str) -> str:
    """A trained version as training leaves it: a finished run, a model version, the alias `challenger`."""
    run_id = registry.start_run("codelupe/tiny", name, {})
    registry.end_run(run_id)
    version = registry.register(run_id, {"base_model": "/models/tiny", "stage": "trained"}).version
    registry.set_alias(CHALLENGER, version)
    return version


def gate(
    mlflow: MlflowResource,
    version: str,
    candidate: dict[str, float],
    champion_version: str | None = None,
    champion: dict[str, float] | None = None,
    base: dict[str, float] | None = None,
    champion_error: str | None = None,
) -> dg.MaterializeResult:
    adapter = AdapterRef(
        "/adapters/x", "run", "snap", 10, BaseModelRef("tiny", "/models/tiny", True), 1.0, 0.9, version
    )
    report = EvaluationReport(version, candidate, base, champion_version, champion, champion_error)
    result = registered_model_version(
        context=dg.build_asset_context(),
        config=PromotionConfig(margin=0.01, tolerance=0.02),
        lora_adapter=adapter,
        model_evaluation=report,
        mlflow=mlflow,
    )
    assert isinstance(result, dg.MaterializeResult)
    return result


def check_passed(result: dg.MaterializeResult) -> bool:
    (check,) = result.check_results or []
    assert check.check_name == NO_REGRESSION
    return check.passed


def test_the_gate_moves_champion_only_on_a_real_win(mlflow: MlflowResource) -> None:
    registry = mlflow.registry()
    v1 = register(registry, "first")
    result = gate(mlflow, v1, scores(0.31), base=BASE)
    assert result.metadata and result.metadata["promoted_to_champion"] is True
    assert registry.alias(CHAMPION).version == v1  # type: ignore[union-attr]
    assert registry.version(v1).tags["stage"] == "champion" and check_passed(result)

    # Within the margin: v2 stays challenger, the reason is a version tag, champion does not move.
    v2 = register(registry, "second")
    result = gate(mlflow, v2, scores(0.315), v1, scores(0.31), BASE)
    tags = registry.version(v2).tags
    assert registry.alias(CHAMPION).version == v1  # type: ignore[union-attr]
    assert registry.alias(CHALLENGER).version == v2  # type: ignore[union-attr]
    assert tags["promoted"] == "false" and tags["stage"] == "challenger"
    assert "does not beat champion v1's 0.3100 by more than the margin 0.01" in tags["promotion_reason"]
    assert tags["compared_with"] == "champion v1" and check_passed(result)

    # A win that regresses another score: not promoted, and the no_regression check fails.
    v3 = register(registry, "third")
    result = gate(mlflow, v3, scores(0.50, similarity=0.2), v1, scores(0.31), BASE)
    assert registry.alias(CHAMPION).version == v1  # type: ignore[union-attr]
    assert "regressed: your_stack_edit_similarity" in registry.version(v3).tags["promotion_reason"]
    assert not check_passed(result)

    # A real win: champion moves, the previous champion is recorded.
    v4 = register(registry, "fourth")
    result = gate(mlflow, v4, scores(0.40), v1, scores(0.31), BASE)
    assert registry.alias(CHAMPION).version == v4  # type: ignore[union-attr]
    assert registry.version(v4).tags["champion_at_decision"] == v1
    assert result.metadata and result.metadata["previous_champion"] == v1 and check_passed(result)


def test_the_gate_refuses_when_the_champion_changed_during_evaluation(mlflow: MlflowResource) -> None:
    registry = mlflow.registry()
    v1, v2, v3 = (register(registry, name) for name in ("a", "b", "c"))
    registry.set_alias(CHAMPION, v2)  # promoted by another run while v3 was evaluated against v1
    gate(mlflow, v3, scores(0.9), v1, scores(0.1), BASE)
    assert registry.alias(CHAMPION).version == v2  # type: ignore[union-attr]
    assert "the champion changed while this version was evaluated" in registry.version(v3).tags["promotion_reason"]


def test_the_gate_keeps_the_champion_it_could_not_score(mlflow: MlflowResource) -> None:
    registry = mlflow.registry()
    v1, v2 = register(registry, "a"), register(registry, "b")
    registry.set_alias(CHAMPION, v1)
    result = gate(mlflow, v2, scores(0.9), v1, None, BASE, champion_error="its adapter is gone")
    assert registry.alias(CHAMPION).version == v1  # type: ignore[union-attr]
    assert "its adapter is gone" in registry.version(v2).tags["promotion_reason"]
    assert check_passed(result)  # compared with the base model instead: nothing worse


def test_the_gate_first_version_worse_than_base_stays_challenger(mlflow: MlflowResource) -> None:
    registry = mlflow.registry()
    v1 = register(registry, "a")
    result = gate(mlflow, v1, scores(0.1), base=BASE)
    assert registry.alias(CHAMPION) is None and registry.alias(CHALLENGER).version == v1  # type: ignore[union-attr]
    assert registry.version(v1).tags["stage"] == "challenger" and not check_passed(result)


def test_re_gating_the_champion_keeps_it(mlflow: MlflowResource) -> None:
    registry = mlflow.registry()
    v1 = register(registry, "a")
    registry.set_alias(CHAMPION, v1)
    gate(mlflow, v1, scores(0.3), v1, scores(0.3), BASE)
    assert registry.alias(CHAMPION).version == v1  # type: ignore[union-attr]
    assert registry.version(v1).tags["stage"] == "champion"


def test_the_primary_metric_defaults_to_the_first_benchmark_that_ran() -> None:
    def report(*benchmarks: BenchmarkSummary) -> EvaluationReport:
        return EvaluationReport("1", {}, None, None, None, None, benchmarks=list(benchmarks))

    skipped = BenchmarkSummary("humaneval_ts", "v", "multipl-e", 5, 0, {}, skipped="tsc is not installed")
    mine = BenchmarkSummary("humaneval_head", "v", "humaneval", 2, 2, {"python": 2})
    assert primary_metric(report(skipped, mine)) == "humaneval_head_pass_at_1"
    assert primary_metric(report()) == "humaneval_pass_at_1"
