-- The near-duplicates dropped. In each cluster the best copy stays: permissive licence first, then stars,
-- then quality score (then forks, then a stable order); every other member is listed with the copy kept.
{{ config(materialized='table', tests={'unique': ['sha256'], 'not_null': ['kept_path']}) }}
WITH members AS (
    SELECT c.cluster_id, d.*
    FROM {{ ref('near_dup_clusters') }} AS c
    JOIN {{ ref('minhash_signatures') }} AS s USING (doc_id)
    JOIN {{ ref('deduped_files') }} AS d USING (sha256)
),
ranked AS (
    SELECT
        *,
        row_number() OVER best_first AS position,
        first_value(source) OVER best_first AS kept_source,
        first_value(path) OVER best_first AS kept_path
    FROM members
    WINDOW best_first AS (
        PARTITION BY cluster_id
        ORDER BY license_rank DESC, coalesce(stars, 0) DESC, quality_score DESC, coalesce(forks, 0) DESC, sha256
    )
)
SELECT sha256, source, path, cluster_id, kept_source, kept_path
FROM ranked
WHERE position > 1
