"""Registry: the promotion gate on the adapter's MLflow model version."""

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.evaluation import MODEL_EVALUATION
from codelupe_pipeline.assets.metadata import markdown_table
from codelupe_pipeline.assets.training import LORA_ADAPTER, AdapterRef
from codelupe_pipeline.evaluate.benchmarks import HUMANEVAL
from codelupe_pipeline.evaluate.evaluation import metric_name
from codelupe_pipeline.evaluate.report import EvaluationReport, comparison_header, comparison_rows
from codelupe_pipeline.registry.mlflow_store import CHAMPION
from codelupe_pipeline.registry.promotion import Decision, PromotionPolicy, decide
from codelupe_pipeline.resources import MlflowResource

REGISTERED_MODEL_VERSION = dg.AssetKey("registered_model_version")
NO_REGRESSION = "no_regression"


class PromotionConfig(dg.Config):
    """The promotion gate: when does a new version become the champion?"""

    primary_metric: str = Field(
        default="",
        description="The score a new version must improve, e.g. humaneval_pass_at_1; empty = pass@1 of the first "
        "configured benchmark that ran (HumanEval unless benchmarks.yaml says otherwise).",
    )
    margin: float = Field(default=0.0, description="The primary metric must beat the champion's by more than this.")
    tolerance: float = Field(default=0.02, description="How far any other rate may drop (absolute) without blocking.")
    perplexity_tolerance: float = Field(default=0.05, description="How far perplexity may rise (relative).")


def primary_metric(report: EvaluationReport) -> str:
    """pass@1 of the first configured benchmark that ran: the one a user listed first is the one they care about."""
    ran = [b.name for b in report.benchmarks if not b.skipped and b.scored]
    return metric_name(ran[0] if ran else HUMANEVAL, "pass@1")


def gate(report: EvaluationReport, current_champion: str | None, policy: PromotionPolicy) -> Decision:
    """The decision, with the guards that a registry shared by several runs needs."""
    if current_champion == report.candidate_version:
        return Decision(True, f"v{current_champion} is already the champion", "")
    if current_champion != report.champion_version:
        was = f"v{report.champion_version}" if report.champion_version else "none"
        return Decision(
            False,
            f"the champion changed while this version was evaluated ({was} -> v{current_champion}); "
            "evaluate it again to compare with the new champion",
            "",
        )
    return decide(
        report.candidate_scores,
        report.champion_scores,
        report.base_scores,
        policy,
        report.champion_label,
        report.champion_error,
    )


@dg.asset(
    key=REGISTERED_MODEL_VERSION,
    ins={"lora_adapter": dg.AssetIn(LORA_ADAPTER), "model_evaluation": dg.AssetIn(MODEL_EVALUATION)},
    group_name="registry",
    kinds={"mlflow"},
    # Judged in the same run as the evaluation it reads (both are requested on the same automation tick).
    automation_condition=dg.AutomationCondition.eager(),
    code_version="2",
    check_specs=[
        dg.AssetCheckSpec(
            NO_REGRESSION,
            asset=REGISTERED_MODEL_VERSION,
            description="The new version is not worse than the champion (or, with none, the base model) on any "
            "score beyond the configured tolerance.",
        )
    ],
    description=(
        "The promotion gate on the adapter's MLflow model version (registered by training as `challenger`): "
        "`champion` moves to it only when it beats the champion on the primary metric by the configured margin "
        "without regressing any other score beyond tolerance, all measured under one evaluation setup; "
        "otherwise it stays `challenger`. The decision and its reason become version tags."
    ),
)
def registered_model_version(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    lora_adapter: AdapterRef,
    model_evaluation: EvaluationReport,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    registry = mlflow.registry()
    policy = PromotionPolicy(
        config.primary_metric or primary_metric(model_evaluation), config.margin, config.tolerance,
        config.perplexity_tolerance,
    )  # fmt: skip
    champion = registry.alias(CHAMPION)
    decision = gate(model_evaluation, champion.version if champion else None, policy)
    version = lora_adapter.model_version
    registry.set_version_tags(
        version,
        {
            "promoted": str(decision.promote).lower(),
            "promotion_reason": decision.reason[:4000],
            "compared_with": decision.reference,
            "champion_at_decision": champion.version if champion else "",
            "stage": "champion" if decision.promote else "challenger",
        },
    )
    if decision.promote:
        registry.set_alias(CHAMPION, version)
    log = context.log.info if decision.promote or not decision.regressions else context.log.warning
    log(f"{registry.model_name} v{version}: {'promoted' if decision.promote else 'not promoted'}: {decision.reason}")
    return dg.MaterializeResult(
        metadata={
            "model": registry.model_name,
            "version": version,
            "promoted_to_champion": decision.promote,
            "promotion_reason": decision.reason,
            "compared_with": decision.reference or "nothing",
            "previous_champion": champion.version if champion else "",
            "dataset_version": lora_adapter.snapshot_version,
            "primary_metric": policy.primary_metric,
            **dict(sorted(model_evaluation.candidate_scores.items())),
            "comparison": markdown_table(
                comparison_header(model_evaluation),
                comparison_rows(model_evaluation),
            ),
            "mlflow_model": dg.MetadataValue.url(f"{mlflow.ui_url}/#/models/{registry.model_name}/versions/{version}"),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_REGRESSION,
                passed=not decision.regressions,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "compared_with": decision.reference or "nothing",
                    "regressions": "; ".join(decision.regressions) or "none",
                },
            )
        ],
    )
