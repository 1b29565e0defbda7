-- Near-duplicate pairs, checked. Within each LSH bucket every member is paired with the bucket's first
-- member (a star: a bucket of n files costs n pairs, never n^2), and a pair is kept when the two signatures
-- agree on at least near_duplicate_jaccard of their slots, the estimated Jaccard similarity of the files'
-- shingle sets. Clustering (next model) joins the stars of overlapping buckets.
{{ config(materialized='table', tests={'not_null': ['doc_a', 'doc_b', 'jaccard']}) }}
WITH buckets AS (
    SELECT list(doc_id ORDER BY doc_id) AS members
    FROM {{ ref('lsh_buckets') }}
    GROUP BY band, bucket
    HAVING count(*) > 1
),
candidates AS (
    SELECT DISTINCT members[1] AS doc_a, unnest(members[2:]) AS doc_b
    FROM buckets
),
scored AS (
    SELECT
        c.doc_a,
        c.doc_b,
        len(list_filter(range(len(a.signature)), lambda i: a.signature[i + 1] = b.signature[i + 1]))
            / len(a.signature) AS jaccard
    FROM candidates AS c
    JOIN {{ ref('minhash_signatures') }} AS a ON a.doc_id = c.doc_a
    JOIN {{ ref('minhash_signatures') }} AS b ON b.doc_id = c.doc_b
)
SELECT *
FROM scored
WHERE jaccard >= {{ var('near_duplicate_jaccard') }}
