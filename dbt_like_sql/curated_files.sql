-- The curated dataset: every kept file, with its (redacted) content, quality score and train/validation split.
-- Whole repositories are held out (by a stable hash of their name), so none is on both sides; when the
-- hash holds out none although there are several repositories, the first one by hash is held out.
{{ config(materialized='table', tests={
    'unique': ['sha256'],
    'not_null': ['content', 'language', 'split', 'quality_score'],
    'accepted_values': {'split': ['train', 'validation']},
    'min_rows': 1,
}) }}
WITH kept AS (
    SELECT *
    FROM {{ ref('file_decisions') }}
    WHERE drop_reason IS NULL
),
repos AS (
    SELECT
        repo,
        md5(repo) AS repo_hash,
        md5_number(repo) % 10000 < {{ var('validation_fraction') }} * 10000 AS hashed_out
    FROM kept
    GROUP BY repo
),
splits AS (
    SELECT
        repo,
        CASE
            WHEN hashed_out THEN 'validation'
            WHEN NOT bool_or(hashed_out) OVER () AND count(*) OVER () > 1
                 AND row_number() OVER (ORDER BY repo_hash) = 1 THEN 'validation'
            ELSE 'train'
        END AS split
    FROM repos
)
SELECT
    k.source,
    k.repo,
    k.path,
    k.language,
    k.license,
    k.stars,
    k.forks,
    k.sha256,
    k.size_bytes,
    k.line_count,
    c.content,
    s.split,
    k.quality_score
FROM kept AS k
JOIN splits AS s USING (repo)
JOIN {{ ref('redacted_files') }} AS c ON c.source = k.source AND c.path = k.path
