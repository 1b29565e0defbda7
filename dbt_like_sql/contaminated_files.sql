-- Files that contain a benchmark prompt or canonical solution: they hold at least
-- decontamination_min_overlap of the text's n-grams (a copy, however reformatted, holds all of them).
-- Only files still kept after deduplication are checked; each one found is dropped, and listed here with
-- the benchmark task it matched so that a curator can check the rule.
{{ config(materialized='table', tests={'unique': ['sha256'], 'not_null': ['benchmark', 'task_id']}) }}
WITH candidates AS (
    SELECT d.sha256, c.content
    FROM {{ ref('deduped_files') }} AS d
    JOIN {{ ref('redacted_files') }} AS c USING (source, path)
    WHERE d.sha256 NOT IN (SELECT sha256 FROM {{ ref('near_duplicates') }})
),
benchmark AS (
    -- The benchmark texts' n-grams, indexed once in numpy (curate/decontamination.py); `index_key` names it.
    SELECT benchmark_index(list(text), {{ var('decontamination_ngram') }}) AS index_key
    FROM {{ source('benchmark_texts') }}
),
file_ngrams AS (
    -- Only the n-grams of a file that some benchmark text has too (those in benchmark_ngrams): numpy looks
    -- them up a batch of files at a time, so the tens of millions of other n-grams never become rows.
    SELECT c.sha256, unnest(benchmark_ngram_hits(c.content, b.index_key)) AS ngram
    FROM candidates AS c
    CROSS JOIN benchmark AS b
),
matches AS (
    SELECT
        f.sha256,
        b.benchmark,
        b.task_id,
        b.part,
        count(DISTINCT f.ngram) / any_value(b.text_ngrams) AS overlap
    FROM file_ngrams AS f
    JOIN {{ ref('benchmark_ngrams') }} AS b USING (ngram)
    GROUP BY f.sha256, b.benchmark, b.task_id, b.part
)
SELECT *
FROM matches
WHERE overlap >= {{ var('decontamination_min_overlap') }}
QUALIFY row_number() OVER (PARTITION BY sha256 ORDER BY overlap DESC, benchmark, task_id, part) = 1
