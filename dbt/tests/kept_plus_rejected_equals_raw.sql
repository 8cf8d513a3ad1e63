-- Nothing silently lost: kept + rejected equals the number of raw documents of the languages this run builds.
-- Scoped to those languages: other partitions may be half-way through a refresh (raw rows ingested, their
-- statistics not yet rebuilt) while this one runs.
select s.lang, s.documents_in, raw.n as raw_documents
from {{ ref('language_filter_stats') }} as s
join (
    select lang, count(*) as n from {{ source('xinst', 'raw_documents') }}
    where lang in ({{ partition_lang_list() }})
    group by lang
) as raw on raw.lang = s.lang
where s.lang in ({{ partition_lang_list() }}) and s.documents_in <> raw.n
