{#- The language partitions this run builds: var 'langs' (a list, or comma-separated codes) or var 'lang'
    (one code). Only ISO 639 codes pass, so they are safe to inline in SQL. -#}
{% macro partition_langs() -%}
  {%- set langs = var('langs', none) -%}
  {%- if langs is none -%}
    {%- set langs = [var('lang', '')] -%}
  {%- elif langs is string -%}
    {%- set langs = langs.split(',') -%}
  {%- endif -%}
  {%- if execute -%}
    {%- if langs | length == 0 -%}
      {{ exceptions.raise_compiler_error("dbt var 'langs' (or 'lang') names no language") }}
    {%- endif -%}
    {%- for lang in langs -%}
      {%- if not modules.re.match('^[a-z]{2,3}$', lang) -%}
        {{ exceptions.raise_compiler_error("dbt var 'langs'/'lang' must hold ISO 639 codes, got '" ~ lang ~ "'") }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(langs) }}
{%- endmacro %}

{#- The partitions as a SQL list body: 'sw', 'bn' (use as: lang in ({{ partition_lang_list() }})). -#}
{% macro partition_lang_list() -%}
  {%- for lang in partition_langs() -%}'{{ lang }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}

{#- Replace these languages' rows: delete them before the incremental insert (idempotent partitions). -#}
{% macro replace_partition_hook() -%}
  {%- if is_incremental() -%}
    DELETE FROM {{ this }} WHERE lang in ({{ partition_lang_list() }})
  {%- else -%}
    SELECT 1
  {%- endif -%}
{%- endmacro %}
