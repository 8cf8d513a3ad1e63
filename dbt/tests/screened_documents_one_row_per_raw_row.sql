-- Idempotent partitions: each raw row of the languages this run builds appears once in screened_documents,
-- however often the language reruns (other languages are checked by their own runs).
select lang, shard, position, count(*) as copies
from {{ ref('screened_documents') }}
where lang in ({{ partition_lang_list() }})
group by lang, shard, position
having count(*) > 1
