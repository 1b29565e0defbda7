-- What redaction replaced, per kind of secret or personal data: findings, and current files affected.
{{ config(materialized='view', columns={
    'kind': 'What was redacted: aws_access_key_id, github_token, private_key, email, ipv4, ...',
    'findings': 'Occurrences replaced by a placeholder',
    'files': 'Files holding at least one',
}) }}
SELECT kind, count(*) AS findings, count(DISTINCT source || ':' || path) AS files
FROM (
    SELECT source, path, unnest(redactions) AS kind
    FROM {{ ref('redacted_files') }}
)
GROUP BY kind
ORDER BY findings DESC, kind
