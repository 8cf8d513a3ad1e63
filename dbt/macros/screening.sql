{#- Incremental screening (model screened_documents). A refresh screens again only the content ids of the
    language whose inputs changed: a copy from a new or re-read shard, a copy whose shard is gone, or a verdict
    written since the last build. Every row of such a content id is recomputed, because its copies are ranked
    together (which one survives). -#}

{#- Whether the existing table can be refreshed incrementally: it exists and records what its rows were
    computed from (tables written before these columns existed are screened again, once, language by language). -#}
{% macro screening_is_incremental() -%}
  {%- if not is_incremental() -%}
    {{ return(false) }}
  {%- endif -%}
  {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
  {{ return('shard_ingested_at' in columns and 'settings_key' in columns and 'signals_version' in columns
            and 'lid_decided_by' in columns) }}
{%- endmacro %}

{#- The raw_shards table (the ingest of each shard). It is written with raw_documents by the same asset; it is
    not a source of its own because dagster-dbt maps each source to one asset. -#}
{% macro raw_shards() -%}
  {{ return(source('xinst', 'raw_documents').incorporate(path={'identifier': 'raw_shards'})) }}
{%- endmacro %}

{#- Raw rows of the partitions' languages with the ingest that wrote them (a re-read shard has a new one). -#}
{% macro raw_rows_with_ingest() -%}
  select r.*, r.rowid as raw_rowid, sh.ingested_at as shard_ingested_at
  from {{ source('xinst', 'raw_documents') }} as r
  join {{ raw_shards() }} as sh on sh.lang = r.lang and sh.shard = r.shard
  where r.lang in ({{ partition_lang_list() }})
{%- endmacro %}

{#- Pre-hook: find the content ids whose inputs changed since they were screened (temp table screening_todo,
    which the model computes again) and delete their screened rows. Decided per shard ingest and per verdict
    version, not per row: a refresh compares the few shard ingests and the verdicts written since the last
    build, instead of every raw row with every screened row (two anti-joins over the whole language). -#}
{% macro forget_changed_screenings() -%}
  {%- set langs = partition_lang_list() -%}
  {%- set raw_documents = source('xinst', 'raw_documents') -%}
  {{ record_screening_build() }};
  {%- if screening_is_incremental() -%}
    -- provenance columns (tables from before them get them; their rows are computed again when their shards,
    -- read again by the newer reader, come back as new ingests)
    alter table {{ this }} add column if not exists source_id varchar;
    alter table {{ this }} add column if not exists source_lang varchar;
    create or replace temp table screening_todo as
    with screened_ingests as (
        select distinct lang, shard, shard_ingested_at as ingested_at from {{ this }} where lang in ({{ langs }})
    ),
    current_ingests as (
        select lang, shard, ingested_at from {{ raw_shards() }} where lang in ({{ langs }})
    ),
    -- every raw row of a shard ingest that no screened row comes from (a new or re-read shard); a shard
    -- holds the rows of its latest ingest only
    new_ingests as (select * from current_ingests except select * from screened_ingests),
    -- screened rows from an ingest that is gone (the shard removed or read again)
    gone_ingests as (select * from screened_ingests except select * from current_ingests),
    -- verdicts written after the latest ones screened: document_signals numbers its writes per language
    screened_versions as (
        select lang, max(signals_version) as version from {{ this }} where lang in ({{ langs }}) group by lang
    )
    select r.lang, r.doc_id from {{ raw_documents }} as r
    semi join new_ingests as n on n.lang = r.lang and n.shard = r.shard
    where r.lang in ({{ langs }})
    union
    select x.lang, x.doc_id from {{ this }} as x
    semi join gone_ingests as g on g.lang = x.lang and g.shard = x.shard and g.ingested_at = x.shard_ingested_at
    where x.lang in ({{ langs }})
    union
    select s.lang, s.doc_id from {{ source('xinst', 'document_signals') }} as s
    left join screened_versions as v on v.lang = s.lang
    where s.lang in ({{ langs }}) and s.signals_version > coalesce(v.version, -1);
    delete from {{ this }} as t where t.lang in ({{ langs }})
      and (t.lang, t.doc_id) in (select lang, doc_id from screening_todo);
    insert into {{ screening_log('screening_changes') }} select lang, doc_id, (select max(build_seq) from {{ screening_log('screening_builds') }})
    from screening_todo
  {%- elif is_incremental() -%}
    -- a table from before these columns: add them, and screen these languages again in full
    alter table {{ this }} add column if not exists shard_ingested_at timestamp;
    alter table {{ this }} add column if not exists settings_key varchar;
    alter table {{ this }} add column if not exists signals_version bigint;
    alter table {{ this }} add column if not exists source_id varchar;
    alter table {{ this }} add column if not exists source_lang varchar;
    alter table {{ this }} add column if not exists lid_second_label varchar;
    alter table {{ this }} add column if not exists lid_second_score double;
    alter table {{ this }} add column if not exists lid_decided_by varchar;
    alter table {{ this }} add column if not exists lid_english_share double;
    delete from {{ this }} where lang in ({{ langs }});
    {{ record_full_screening() }}
  {%- else -%}
    {{ record_full_screening() }}
  {%- endif -%}
{%- endmacro %}

{#- The change log that near-dedup (language_filtered_text) reads, so that its refresh joins the changed
    documents instead of whole languages: every build gets a number (screening_builds, never reused), and the
    content ids it computed again are listed under it (screening_changes); a null doc id means "the whole
    language". Near-dedup deletes the entries it has applied, up to the build it read. Written in the model's
    transaction: a failed build leaves no entry. -#}
{% macro record_screening_build() -%}
  create table if not exists {{ screening_log('screening_builds') }} (build_seq bigint not null, built_at timestamp not null,
                                               langs varchar not null);
  create table if not exists {{ screening_log('screening_changes') }} (lang varchar not null, doc_id varchar, build_seq bigint not null);
  -- a language's first build here (a new language, or a warehouse from before the log): the whole language
  insert into {{ screening_log('screening_changes') }}
  select t.lang, null, coalesce((select max(build_seq) from {{ screening_log('screening_builds') }}), 0) + 1
  from (select unnest([{{ partition_lang_list() }}]) as lang) as t
  where not exists (select 1 from {{ screening_log('screening_builds') }} as b where list_contains(string_split(b.langs, ','), t.lang));
  insert into {{ screening_log('screening_builds') }} select coalesce(max(build_seq), 0) + 1, now(), '{{ partition_langs() | join(",") }}'
  from {{ screening_log('screening_builds') }}
{%- endmacro %}

{% macro record_full_screening() -%}
  insert into {{ screening_log('screening_changes') }}
  select unnest([{{ partition_lang_list() }}]), null, (select max(build_seq) from {{ screening_log('screening_builds') }})
{%- endmacro %}

{#- The change log's tables, in the model's own database and schema: on the lakehouse target the connection's
    default database is an in-memory one, and a transaction may write to one attached database only. -#}
{% macro screening_log(name) -%}
  {{ this.database }}.{{ this.schema }}.{{ name }}
{%- endmacro %}
