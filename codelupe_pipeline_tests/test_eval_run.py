"""Evaluation runs with a real (tiny) model and real LoRA adapters: generation, caching, results, the asset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codelupe_pipeline.assets.evaluation import EvaluationConfig, model_evaluation
from codelupe_pipeline.assets.training import AdapterRef
from codelupe_pipeline.cli import main
from codelupe_pipeline.evaluate.benchmarks import load_benchmarks
from codelupe_pipeline.evaluate.evaluation import EvalSettings, Evaluator, Subject
from codelupe_pipeline.evaluate.generation import (
    GenerationParams,
    Request,
    TransformersBackend,
    choose_backend,
)
from codelupe_pipeline.evaluate.heldout import HeldoutParams, build_heldout
from codelupe_pipeline.evaluate.report import base_subject
from codelupe_pipeline.evaluate.results import ResultsStore
from codelupe_pipeline.evaluate.sandbox import SandboxLimits
from codelupe_pipeline.registry.mlflow_store import CHAMPION
from codelupe_pipeline.resources import ComputeResource, EvaluationResource, MlflowResource, StorageResource
from codelupe_pipeline.train.base_model import BaseModelRef, build_tiny_model
from codelupe_pipeline.train.profiles import PROFILES
from codelupe_pipeline.train.samples import SnapshotFile

CODE = [
    "def add(a, b):\n    total = a + b\n    return total\n\n\ndef scale(xs, k):\n    out = [x * k for x in xs]\n"
    "    return out\n",
    "import os\n\n\ndef join(*parts):\n    path = os.path.join(*parts)\n    return os.path.normpath(path)\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n        return item\n",
]
VALIDATION = [SnapshotFile("val-repo", f"mod{i}.py", "python", text) for i, text in enumerate(CODE)]
SETTINGS = EvalSettings(
    generation=GenerationParams(max_new_tokens=8, batch_size=4),
    limits=SandboxLimits(cpu_seconds=2),
    task_limit=2,
    workers=2,
)
HELDOUT = HeldoutParams(max_new_tokens=8, perplexity_window=64)


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A real LoRA adapter on the base model, its weights random (not zero) so that it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    base = build_tiny_model(PROFILES["tiny"], CODE * 20, root / "base")
    return {
        "base": base,
        "candidate": make_adapter(base, root / "candidate", seed=1),
        "champion": make_adapter(base, root / "champion", seed=2),
    }


def subjects(models: dict[str, Path]) -> list[Subject]:
    base = str(models["base"])
    return [
        Subject("adapter:candidate", "candidate", base, str(models["candidate"])),
        base_subject(base),
        Subject("version:1", "champion v1", base, str(models["champion"]), cacheable=True),
    ]


def evaluator(store: ResultsStore, settings: EvalSettings = SETTINGS) -> Evaluator:
    return Evaluator(load_benchmarks(None), build_heldout(VALIDATION, HELDOUT), settings, "cpu", store)


@pytest.mark.slow
def test_candidate_base_and_champion_are_scored_once_and_cached(models: dict[str, Path], tmp_path: Path) -> None:
    """Three models, three runs (~20 s on 2 cores)."""
    store = ResultsStore(tmp_path / "results.duckdb")
    first = evaluator(store).evaluate(subjects(models))
    metrics = {key: result.metrics for key, result in first.results.items()}
    expected = {"humaneval_pass_at_1", "your_stack_exact_match", "your_stack_edit_similarity", "your_stack_perplexity"}
    assert all(set(m) == expected for m in metrics.values()), metrics
    candidate, base, champion = (metrics[s.key] for s in subjects(models))
    # The adapters change the model: their perplexities differ from the base model's and from each other.
    assert (
        len({candidate["your_stack_perplexity"], base["your_stack_perplexity"], champion["your_stack_perplexity"]}) == 3
    )
    assert first.backend == "transformers" and first.status_counts and first.sandbox["isolation"]
    (humaneval, your_stack) = first.benchmarks
    assert (humaneval.tasks, humaneval.scored, humaneval.excluded) == (2, 2, {})
    assert your_stack.name == "your_stack" and your_stack.tasks >= 3

    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scores").fetchone() == (6,)
        rows = con.execute(
            "SELECT t.benchmark, count(*) FROM task_results t JOIN scores s USING (score_id) "
            "WHERE s.subject_key = 'adapter:candidate' GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert rows == [("humaneval", 2), ("your_stack", your_stack.tasks)]
        assert con.execute("SELECT count(*) FROM self_tests").fetchone() == (1,)

    # Again: the base model and the champion come from the store; only the candidate is scored.
    second = evaluator(store).evaluate(subjects(models))
    assert second.results["adapter:candidate"].cached == []
    for key in (subjects(models)[1].key, "version:1"):
        assert second.results[key].cached == ["humaneval", "your_stack"]
        assert second.results[key].metrics == first.results[key].metrics
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scores").fetchone() == (8,)

    # Other generation settings are another cache key: everything is scored again.
    other = EvalSettings(GenerationParams(max_new_tokens=6, batch_size=4), SETTINGS.limits, 2, workers=2)
    third = evaluator(store, other).evaluate(subjects(models))
    assert all(result.cached == ["your_stack"] for key, result in third.results.items() if key != "adapter:candidate")


def test_sampling_reports_pass_at_10(models: dict[str, Path], tmp_path: Path) -> None:
    settings = EvalSettings(
        GenerationParams(max_new_tokens=4, batch_size=8, temperature=0.8, samples_per_task=10), task_limit=1, workers=2
    )
    run = Evaluator(load_benchmarks(None), None, settings, "cpu", ResultsStore(tmp_path / "r.duckdb")).evaluate(
        subjects(models)[:1]
    )
    assert set(run.results["adapter:candidate"].metrics) == {"humaneval_pass_at_1", "humaneval_pass_at_10"}
    (row,) = run.results["adapter:candidate"].tasks["humaneval"]
    assert row.samples == 10 and sum(row.statuses.values()) == 10


def test_a_champion_that_cannot_load_is_reported_not_fatal(models: dict[str, Path], tmp_path: Path) -> None:
    broken = Subject("version:9", "champion v9", str(models["base"]), str(tmp_path / "gone"), cacheable=True)
    run = Evaluator(load_benchmarks(None), None, SETTINGS, "cpu", ResultsStore(tmp_path / "r.duckdb")).evaluate(
        [subjects(models)[0], broken]
    )
    assert run.results["adapter:candidate"].error is None and "humaneval_pass_at_1" in run.scores("adapter:candidate")  # type: ignore[operator]
    assert run.results["version:9"].error and run.scores("version:9") is None


@pytest.fixture(scope="module")
def backend(models: dict[str, Path]) -> Iterator[TransformersBackend]:
    loaded = TransformersBackend(str(models["base"]), {"a": str(models["candidate"])}, "cpu")
    yield loaded
    loaded.close()


def test_generation_is_batched_across_tasks_with_stops(backend: TransformersBackend) -> None:
    requests = [Request("def add(a, b):\n", ("\n",)), Request("import os\n", ()), Request("class Stack:\n", ("\n",))]
    greedy = GenerationParams(max_new_tokens=12, batch_size=2)
    first = sorted(backend.generate(requests, greedy, "a"))
    assert [i for i, _ in first] == [0, 1, 2]
    assert "\n" not in first[0][1] and "\n" not in first[2][1]  # cut at the stop sequence
    assert sorted(backend.generate(requests, greedy, "a")) == first  # greedy is deterministic
    assert sorted(backend.generate(requests, greedy, None)) != first  # the base model, adapter disabled
    sampled = list(
        backend.generate(requests, GenerationParams(max_new_tokens=4, temperature=1.0, samples_per_task=3), "a")
    )
    assert sorted(i for i, _ in sampled) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    nll, tokens = backend.token_nll(CODE, 16, "a")
    assert tokens > 0 and nll > 0


def test_backend_choice() -> None:
    assert choose_backend("auto", "cpu") == "transformers"
    with pytest.raises(RuntimeError, match="vLLM"):
        choose_backend("vllm", "cpu")
    with pytest.raises(ValueError, match="not one of"):
        choose_backend("tgi", "cpu")
    with pytest.raises(ValueError, match="greedy"):
        GenerationParams(samples_per_task=5)


def test_cli_evaluates_an_adapter_directory(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODELUPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CODELUPE_DEVICE", "cpu")
    code = main(
        ["evaluate", "--adapter", str(models["candidate"]), "--tasks", "1", "--max-new-tokens", "6", "--progress"]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    assert "generating: 100%" in captured.err and "1/1" in captured.err  # the bar of each generation pass
    assert "humaneval_pass_at_1" in out and "base model" in out
    with duckdb.connect(str(tmp_path / "data" / "eval" / "results.duckdb"), read_only=True) as con:
        labels = {r[0] for r in con.execute("SELECT subject_label FROM scores").fetchall()}
    assert labels == {"adapter candidate", "base model"}
    assert main(["evaluate", "--adapter", str(tmp_path)]) == 2  # not an adapter: a clear error, no traceback
    assert "not a LoRA adapter directory" in capsys.readouterr().err


def test_the_asset_rescores_the_champion_from_mlflow(models: dict[str, Path], tmp_path: Path) -> None:
    """The evaluation asset against a real MLflow store: v1 is champion, v2 is evaluated next to it; v1's
    adapter comes back from MLflow's artifacts, and both are logged and tagged."""
    data = tmp_path / "data"
    snapshot = data / "snapshots" / "snap1" / "data.parquet"
    snapshot.parent.mkdir(parents=True)
    columns = ["repo", "path", "language", "content", "split"]
    rows = [[f.repo, f.path, f.language, f.content, "validation"] for f in VALIDATION]
    pq.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}), snapshot)
    mlflow = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"), registered_model="m"
    )
    registry = mlflow.registry()
    base = str(models["base"])
    versions = {}
    for name in ("champion", "candidate"):
        run_id = registry.start_run("codelupe/tiny", name, {})
        registry.log_artifacts(run_id, models[name], "adapter")
        registry.end_run(run_id)
        versions[name] = (run_id, registry.register(run_id, {"base_model": base}).version)
    registry.set_alias(CHAMPION, versions["champion"][1])
    run_id, version = versions["candidate"]
    adapter = AdapterRef(
        str(models["candidate"]), run_id, "snap1", 3, BaseModelRef("tiny", base, True), 9.0, 8.0, version
    )

    result = model_evaluation(
        context=dg.build_asset_context(),
        config=EvaluationConfig(task_limit=1, max_new_tokens=6, your_stack_max_new_tokens=6, batch_size=4),
        lora_adapter=adapter,
        compute=ComputeResource(device="cpu"),
        storage=StorageResource(data_dir=str(data)),
        mlflow=mlflow,
        evaluation=EvaluationResource(
            benchmarks_file=str(tmp_path / "none.yaml"), sandbox_workers=2, results_path=str(data / "eval" / "r.duckdb")
        ),
    )
    report = result.value
    assert report.champion_version == "1" and report.champion_error is None
    assert report.champion_scores and set(report.champion_scores) == set(report.candidate_scores)
    assert (
        report.base_scores
        and report.base_scores["your_stack_perplexity"] != report.candidate_scores["your_stack_perplexity"]
    )
    assert (data / "eval" / "adapters" / "v1" / "adapter" / "adapter_config.json").exists()
    assert "champion v1" in str(result.metadata["comparison"].value)
    client = registry.client
    assert "humaneval_pass_at_1" in client.get_run(run_id).data.metrics
    assert "base_humaneval_pass_at_1" in client.get_run(run_id).data.metrics
    assert registry.version(version).tags["stage"] == "benchmarked"
    table = json.loads(
        Path(client.download_artifacts(run_id, "evaluation/task_results.json", str(tmp_path))).read_text()
    )
    assert "task_id" in table["columns"] and len(table["data"]) >= 1
