-- Token n-grams of every benchmark prompt and canonical solution the evaluation stage scores (HumanEval by
-- default; the benchmark_texts asset says which). Tokens are lowercased identifiers and numbers, so
-- whitespace, punctuation and case never hide a copy. A text shorter than n tokens is trivial
-- (`return x + y`), has no n-gram and can never match, as in BigCode's decontamination.
{{ config(materialized='table', tests={'not_null': ['ngram', 'text_ngrams']}) }}
WITH grams AS (
    SELECT
        benchmark,
        task_id,
        part,
        list_distinct(ngram_hashes(text, {{ var('decontamination_ngram') }})) AS grams
    FROM {{ source('benchmark_texts') }}
)
SELECT benchmark, task_id, part, len(grams) AS text_ngrams, unnest(grams) AS ngram
FROM grams
WHERE len(grams) > 0
