"""Registry: the adapter as a new MLflow model version, with provenance tags and a promotion decision."""

import dagster as dg
from pydantic import Field

from codelupe_pipeline.assets.evaluation import HUMANEVAL_BENCHMARK, metric_name
from codelupe_pipeline.assets.training import LORA_ADAPTER, AdapterRef
from codelupe_pipeline.evaluate.benchmark import BenchmarkResult
from codelupe_pipeline.registry.mlflow_store import CHAMPION
from codelupe_pipeline.registry.promotion import PromotionPolicy, decide
from codelupe_pipeline.resources import MlflowResource

REGISTERED_MODEL_VERSION = dg.AssetKey("registered_model_version")
PRIMARY_METRIC = metric_name("humaneval", "pass@1")


class PromotionConfig(dg.Config):
    """The promotion gate: when does a new version become the champion?"""

    margin: float = Field(default=0.0, description="Primary metric must beat the champion's by more than this.")
    tolerance: float = Field(default=0.02, description="How far another score may drop without blocking.")


def _scores(tags: dict[str, str]) -> dict[str, float]:
    scores = {}
    for key, value in tags.items():
        if key.startswith("humaneval_pass_at_"):
            try:
                scores[key] = float(value)
            except ValueError:
                continue
    return scores


@dg.asset(
    key=REGISTERED_MODEL_VERSION,
    ins={"lora_adapter": dg.AssetIn(LORA_ADAPTER), "humaneval_benchmark": dg.AssetIn(HUMANEVAL_BENCHMARK)},
    group_name="registry",
    kinds={"mlflow"},
    code_version="1",
    description=(
        "The promotion gate on the adapter's MLflow model version (registered by training as `challenger`, "
        "scored by the benchmark): `champion` moves to it only when it beats the champion on pass@1 by the "
        "configured margin without regressing other scores; the decision and its reason become version tags."
    ),
)
def registered_model_version(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    lora_adapter: AdapterRef,
    humaneval_benchmark: BenchmarkResult,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    registry = mlflow.registry()
    scores = {metric_name("humaneval", k): v for k, v in humaneval_benchmark.pass_at.items()}
    champion = registry.alias(CHAMPION)
    decision = decide(
        scores,
        _scores(champion.tags) if champion else None,
        PromotionPolicy(primary_metric=PRIMARY_METRIC, margin=config.margin, tolerance=config.tolerance),
    )
    version = lora_adapter.model_version
    registry.set_version_tags(
        version,
        {
            **{k: f"{v:.6f}" for k, v in scores.items()},
            "promoted": str(decision.promote).lower(),
            "promotion_reason": decision.reason,
            "champion_at_decision": champion.version if champion else "",
            "stage": "champion" if decision.promote else "challenger",
        },
    )
    if decision.promote:
        registry.set_alias(CHAMPION, version)
    context.log.info(f"{registry.model_name} v{version}: {decision.reason}")
    return dg.MaterializeResult(
        metadata={
            "model": registry.model_name,
            "version": version,
            "promoted_to_champion": decision.promote,
            "promotion_reason": decision.reason,
            "previous_champion": champion.version if champion else "",
            "dataset_version": lora_adapter.snapshot_version,
            **scores,
            "mlflow_model": dg.MetadataValue.url(f"{mlflow.ui_url}/#/models/{registry.model_name}/versions/{version}"),
        }
    )
