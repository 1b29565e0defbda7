-- MinHash signatures of every unique kept file, for near-deduplication: The Stack's parameters (5-token
-- shingles, 256 permutations). Computed in numpy over whole Arrow batches with one-permutation hashing and
-- optimal densification: one hash per shingle instead of 256 (curate/minhash.py). `doc_id` is a compact key
-- for the LSH and clustering models; a file without a single token has no signature.
{{ config(materialized='table', tests={'unique': ['doc_id', 'sha256']}) }}
SELECT
    row_number() OVER (ORDER BY d.sha256) AS doc_id,
    d.sha256,
    minhash_signature(
        c.content, {{ var('minhash_ngram') }}, {{ var('minhash_num_perm') }}, {{ var('minhash_seed') }}
    ) AS signature
FROM {{ ref('deduped_files') }} AS d
JOIN {{ ref('redacted_files') }} AS c USING (source, path)
