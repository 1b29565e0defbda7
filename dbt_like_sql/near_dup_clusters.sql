-- Clusters of near-duplicates: the connected components of the checked pairs (what union-find computes),
-- as label propagation in one recursive query: every file takes the smallest doc_id it is connected to.
-- Each round only revisits the files whose label just changed (USING KEY), so the cost is edges x rounds,
-- and rounds are few because the pairs are stars around each bucket's first member.
{{ config(materialized='table', tests={'unique': ['doc_id'], 'not_null': ['cluster_id']}) }}
WITH RECURSIVE edges AS (
    SELECT doc_a AS src, doc_b AS dst FROM {{ ref('near_dup_pairs') }}
    UNION ALL
    SELECT doc_b, doc_a FROM {{ ref('near_dup_pairs') }}
),
components(doc_id, cluster_id) USING KEY (doc_id) AS (
    SELECT DISTINCT src, src FROM edges
    UNION
    SELECT e.dst, min(c.cluster_id)
    FROM components AS c
    JOIN edges AS e ON e.src = c.doc_id
    JOIN recurring.components AS known ON known.doc_id = e.dst
    GROUP BY e.dst
    HAVING min(c.cluster_id) < min(known.cluster_id)
)
SELECT doc_id, cluster_id
FROM components
