-- Idempotent partitions: each raw row appears once in screened_documents, however often a language reruns.
select lang, shard, position, count(*) as copies
from {{ ref('screened_documents') }}
group by lang, shard, position
having count(*) > 1
