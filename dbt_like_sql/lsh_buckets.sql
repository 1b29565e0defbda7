-- Locality-sensitive hashing: each signature is cut into bands of rows, and each band hashed into a bucket.
-- Two files that share a bucket in any band are near-duplicate candidates; with 25 bands of 10 rows a pair
-- with Jaccard similarity 0.9 is a candidate with probability 0.99998, at 0.8 with 0.94, at 0.5 with 0.024.
{{ config(materialized='view') }}
SELECT
    s.doc_id,
    b.band,
    hash(b.band, list_slice(
        s.signature,
        b.band * {{ var('minhash_rows_per_band') }} + 1,
        (b.band + 1) * {{ var('minhash_rows_per_band') }}
    )) AS bucket
FROM {{ ref('minhash_signatures') }} AS s
CROSS JOIN range({{ var('minhash_bands') }}) AS b(band)
WHERE s.signature IS NOT NULL
