-- Nothing silently lost: for every language, kept + rejected equals the number of raw documents.
select s.lang, s.documents_in, raw.n as raw_documents
from {{ ref('language_filter_stats') }} as s
join (
    select lang, count(*) as n from {{ source('xinst', 'raw_documents') }} group by lang
) as raw on raw.lang = s.lang
where s.documents_in <> raw.n
