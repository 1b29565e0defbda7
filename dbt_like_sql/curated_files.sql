-- The curated dataset: every kept, deduplicated file with its train/validation split.
-- Whole repositories are held out (by a stable hash of their name), so none is on both sides; when the
-- hash holds out none although there are several repositories, the first one by hash is held out.
{{ config(materialized='table', tests={
    'unique': ['sha256'],
    'not_null': ['content', 'language', 'split'],
    'accepted_values': {'split': ['train', 'validation']},
    'min_rows': 1,
}) }}
WITH repos AS (
    SELECT
        repo,
        md5(repo) AS repo_hash,
        md5_number(repo) % 10000 < {{ var('validation_fraction') }} * 10000 AS hashed_out
    FROM {{ ref('deduped_files') }}
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
    d.source,
    d.repo,
    d.path,
    d.language,
    d.license,
    d.stars,
    d.forks,
    d.sha256,
    d.size_bytes,
    d.line_count,
    b.content,
    s.split
FROM {{ ref('deduped_files') }} AS d
JOIN splits AS s USING (repo)
JOIN {{ source('raw_blobs') }} AS b USING (sha256)
