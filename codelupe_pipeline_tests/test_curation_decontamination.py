"""Benchmark decontamination: copies of prompts and solutions are found however they are formatted; trivial
solutions and ordinary code are not; more benchmarks are added by passing their texts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from codelupe_pipeline.curate.decontamination import (
    BenchmarkIndex,
    evaluation_benchmark_texts,
    find_contamination,
    texts_from_tasks,
)
from codelupe_pipeline.curate.shingles import ngram_hashes, token_hashes
from codelupe_pipeline.evaluate.benchmarks import humaneval_path
from codelupe_pipeline.evaluate.tasks import load_tasks
from codelupe_pipeline_tests.conftest import RawFile, run_curation_models, write_raw_store
from codelupe_pipeline_tests.test_curation_rules import synthetic_module

TASKS = {task.task_id: task for task in load_tasks(humaneval_path(), "humaneval")[1]}


@dataclass(frozen=True)
class MbppTask:
    task_id: str
    prompt: str
    canonical_solution: str


MBPP = [
    MbppTask(
        "mbpp/11",
        "Write a python function to remove first and last occurrence of a given character from the string.",
        "def remove_Occ(s,ch):\n    for i in range(len(s)):\n        if (s[i] == ch):\n            s = s[0 : i] + "
        "s[i + 1:]\n            break\n    for i in range(len(s) - 1,-1,-1):\n        if (s[i] == ch):\n"
        "            s = s[0 : i] + s[i + 1:]\n            break\n    return s\n",
    )
]


def test_reformatted_copies_are_found_trivial_solutions_and_other_code_are_not() -> None:
    texts = evaluation_benchmark_texts()
    task = TASKS["HumanEval/0"]
    documents = [
        "# vendored\n" + (task.prompt + task.canonical_solution).replace("    ", "\t").upper(),
        "def helper(numbers, threshold):\n    '''Not a copy.'''\n" + TASKS["HumanEval/12"].canonical_solution,
        synthetic_module(1) + "\ndef frac(number):\n" + TASKS["HumanEval/2"].canonical_solution,  # trivial
        synthetic_module(2),
    ]
    found = {m.row: (m.text.task_id, m.text.part, m.overlap) for m in find_contamination(pa.array(documents), texts)}
    assert set(found) == {0, 1}
    assert found[0][:1] == ("HumanEval/0",) and found[0][2] == 1.0
    assert found[1] == ("HumanEval/12", "solution", 1.0)


def test_index_hits_are_every_benchmark_ngram_of_each_document() -> None:
    """Hashing only windows of benchmark tokens finds exactly the n-grams a full scan finds in the set."""
    texts = [t.text for t in evaluation_benchmark_texts()]
    index = BenchmarkIndex.build(texts, 13)
    task = TASKS["HumanEval/0"]
    documents = pa.array(
        [
            synthetic_module(3) + task.prompt.upper() + synthetic_module(4),
            "",
            str(task.canonical_solution)[:40],
            str(TASKS["HumanEval/12"].canonical_solution) + "\n" + task.prompt,  # copies touch a document boundary
            synthetic_module(5),
            task.canonical_solution,
        ]
    )
    hits = index.hits(documents)
    every = ngram_hashes(token_hashes(documents), 13)
    for doc in range(len(documents)):
        grams = every.values[every.offsets[doc] : every.offsets[doc + 1]]
        expected = np.unique(grams[np.isin(grams, index.grams)])
        assert hits.values[hits.offsets[doc] : hits.offsets[doc + 1]].tolist() == expected.tolist()
    assert hits.counts.tolist()[:3] != [0, 0, 0] and hits.counts[1] == 0 and hits.counts[3] > 0


def test_half_a_text_is_the_default_threshold() -> None:
    task = TASKS["HumanEval/10"]
    texts = texts_from_tasks("humaneval", [task])
    lines = task.prompt.splitlines(keepends=True)
    most, little = "".join(lines[: len(lines) * 3 // 4]), "".join(lines[: len(lines) // 5])
    found = {m.row for m in find_contamination(pa.array([most, little]), texts)}
    assert found == {0}


def test_sql_models_and_numpy_agree_on_any_benchmark(tmp_path: Path) -> None:
    """A new benchmark is just more texts; the SQL models and the snapshot check find the same files."""
    texts = texts_from_tasks("mbpp", MBPP) + texts_from_tasks("humaneval", [TASKS["HumanEval/0"]])
    files = [
        RawFile("a", "strings.py", synthetic_module(3) + "\n" + MBPP[0].canonical_solution),
        RawFile("a", "close.py", TASKS["HumanEval/0"].prompt + TASKS["HumanEval/0"].canonical_solution),
        RawFile("a", "clean.py", synthetic_module(4)),
    ]
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_raw_store(con, files)
    run_curation_models(con, texts=texts)
    in_sql = dict(
        con.execute(
            "SELECT d.path, c.benchmark FROM contaminated_files c JOIN file_decisions d USING (sha256)"
        ).fetchall()
    )
    assert in_sql == {"strings.py": "mbpp", "close.py": "humaneval"}
    in_numpy = {
        files[m.row].path: m.text.benchmark for m in find_contamination(pa.array([f.content for f in files]), texts)
    }
    assert in_numpy == in_sql
    listed = con.execute(
        "SELECT path, drop_detail FROM file_decisions WHERE drop_reason = 'benchmark_contamination' ORDER BY path"
    ).fetchall()
    assert listed[0][0] == "close.py" and listed[0][1].startswith("humaneval HumanEval/0 ")


def test_every_benchmark_the_evaluation_scores_is_decontaminated(tmp_path: Path) -> None:
    """The benchmarks file of the evaluation stage is the decontamination list: add MBPP there, and a copy of
    an MBPP solution is dropped from the training data."""
    row = {"task_id": 11, "text": MBPP[0].prompt, "code": MBPP[0].canonical_solution, "test_list": ["assert True"]}
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(row) + "\n")
    config = tmp_path / "benchmarks.yaml"
    config.write_text("benchmarks:\n  - name: humaneval\n  - name: mbpp\n    path: mbpp.jsonl\n    format: mbpp\n")
    texts = evaluation_benchmark_texts(config)
    assert {t.benchmark for t in texts} == {"humaneval", "mbpp"}
    assert len([t for t in texts if t.benchmark == "humaneval" and t.part == "prompt"]) == 164
    copy = pa.array([synthetic_module(5) + MBPP[0].canonical_solution])
    assert [m.text.task_id for m in find_contamination(copy, texts)] == ["mbpp/11"]
    assert find_contamination(copy, evaluation_benchmark_texts()) == [], "without MBPP configured it is not a match"
