"""The store as a Dagster resource: which backend holds the warehouse is configuration.

``backend: embedded`` (the default) is the single DuckDB file under the data home; ``backend: lakehouse`` is a
DuckLake whose catalog is the Postgres database named by an environment variable (``XINST_LAKEHOUSE_CATALOG``
by default: a connection string carries a password, so it never goes into run config or the UI) and whose data
path is a shared folder or an ``s3://`` URL. :meth:`Store.from_env` reads the choice from the environment, as
a deployment sets it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, ContextManager, Literal, Mapping, TypeVar

import duckdb
from dagster import ConfigurableResource
from pydantic import Field

from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.store.base import RetryPolicy, StoreBackend, TransactionStats
from xinst_assets.store.embedded import EmbeddedBackend
from xinst_assets.store.extensions import extension_directory
from xinst_assets.store.lakehouse import LakehouseBackend, LakehouseSettings, S3Settings

T = TypeVar("T")

BACKEND_ENV = "XINST_STORE"
CATALOG_ENV = "XINST_LAKEHOUSE_CATALOG"
DATA_ENV = "XINST_LAKEHOUSE_DATA"
SCHEMA_ENV = "XINST_LAKEHOUSE_SCHEMA"
S3_ENDPOINT_ENV = "XINST_LAKEHOUSE_S3_ENDPOINT"
S3_REGION_ENV = "XINST_LAKEHOUSE_S3_REGION"
S3_URL_STYLE_ENV = "XINST_LAKEHOUSE_S3_URL_STYLE"
S3_USE_SSL_ENV = "XINST_LAKEHOUSE_S3_USE_SSL"


class Store(ConfigurableResource):
    """The warehouse's tables, on the embedded DuckDB file or on a DuckLake lakehouse."""

    backend: Literal["embedded", "lakehouse"] = Field(
        default="embedded", description="embedded: one DuckDB file (one machine); lakehouse: DuckLake with a "
        "Postgres catalog and shared data files (many writers on many machines).")
    path: str = Field(default="", description="embedded: path of the DuckDB database file.")
    lock_timeout_s: float = Field(
        default=1800.0, description="embedded: how long a run waits for another run's warehouse transaction.")
    threads: int | None = Field(default=None, description="DuckDB threads per connection (default: all).")
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit, e.g. '4GB'.")
    catalog_env: str = Field(
        default=CATALOG_ENV, description="lakehouse: the environment variable holding the catalog's Postgres "
        "connection string (postgresql://user:password@host:5432/db, or key=value conninfo).")
    data_path: str = Field(
        default="", description="lakehouse: where the Parquet data files go: a folder that every run mounts at "
        "the same path, or s3://bucket/prefix/.")
    metadata_schema: str = Field(
        default="xinst_lakehouse", description="lakehouse: the catalog's schema in Postgres (its own schema, so "
        "the catalog can share a database with the Dagster instance).")
    s3_endpoint: str | None = Field(
        default=None, description="lakehouse on S3-compatible storage: host:port of the service (None: AWS).")
    s3_region: str | None = Field(default=None, description="lakehouse on S3: the bucket's region.")
    s3_url_style: Literal["vhost", "path"] = Field(
        default="vhost", description="lakehouse on S3: 'path' for most S3-compatible services.")
    s3_use_ssl: bool = Field(default=True, description="lakehouse on S3: https to the endpoint.")
    write_attempts: int = Field(
        default=30, ge=1, description="lakehouse: how many times a write that lost a commit race is run.")
    extension_dir: str | None = Field(
        default=None, description="Where DuckDB's extensions are laid out from their wheels (default: a "
        "private per-user cache folder, or $XINST_DUCKDB_EXTENSIONS).")

    @classmethod
    def from_env(cls, home: Path, environ: Mapping[str, str] | None = None,
                 warehouse: Path | None = None) -> "Store":
        """The store a deployment's environment chooses: ``XINST_STORE`` (embedded, the default, or
        lakehouse), ``XINST_WAREHOUSE`` (the embedded file; default ``<home>/warehouse.duckdb``),
        ``XINST_LAKEHOUSE_DATA``, ``XINST_LAKEHOUSE_SCHEMA`` and ``XINST_LAKEHOUSE_S3_*``; the catalog's
        connection string stays in ``XINST_LAKEHOUSE_CATALOG``, read when the lake is attached. ``warehouse``:
        the embedded file as the deployment's configuration already resolved it (it wins over the variable)."""
        env = os.environ if environ is None else environ
        backend = env.get(BACKEND_ENV, "embedded") or "embedded"
        if backend not in ("embedded", "lakehouse"):
            raise ValueError(f"{BACKEND_ENV} must be 'embedded' or 'lakehouse', got {backend!r}")
        fields: dict = {
            "backend": backend,
            "path": str(warehouse if warehouse is not None
                        else Path(env["XINST_WAREHOUSE"]).expanduser() if env.get("XINST_WAREHOUSE")
                        else Path(home) / "warehouse.duckdb"),
            "data_path": env.get(DATA_ENV, ""),
        }
        if env.get(SCHEMA_ENV):
            fields["metadata_schema"] = env[SCHEMA_ENV]
        if env.get(S3_ENDPOINT_ENV):
            fields["s3_endpoint"] = env[S3_ENDPOINT_ENV]
            fields["s3_url_style"] = "path"  # what S3-compatible services serve; override below
        if env.get(S3_REGION_ENV):
            fields["s3_region"] = env[S3_REGION_ENV]
        if env.get(S3_URL_STYLE_ENV):
            fields["s3_url_style"] = env[S3_URL_STYLE_ENV]
        if env.get(S3_USE_SSL_ENV):
            fields["s3_use_ssl"] = env[S3_USE_SSL_ENV].lower() in ("1", "true", "yes")
        return cls(**fields)

    # -- the backend ---------------------------------------------------------------------------------------

    def lakehouse_settings(self) -> LakehouseSettings:
        """The lake this configuration names (the catalog's connection string read from the environment now).
        Fails with the setting to fix when one is missing."""
        catalog = os.environ.get(self.catalog_env, "")
        if not catalog:
            raise ValueError(f"the lakehouse store needs its catalog's Postgres connection string in the "
                             f"environment variable {self.catalog_env}")
        if not self.data_path:
            raise ValueError(f"the lakehouse store needs a data path (resource setting data_path, or {DATA_ENV}): "
                             "a folder every run mounts at the same path, or s3://bucket/prefix/")
        s3 = None
        if self.s3_endpoint or self.s3_region or "://" in self.data_path:
            s3 = S3Settings(endpoint=self.s3_endpoint, region=self.s3_region, url_style=self.s3_url_style,
                            use_ssl=self.s3_use_ssl)
        return LakehouseSettings(
            catalog_uri=catalog, data_path=self.data_path, metadata_schema=self.metadata_schema,
            threads=self.threads, memory_limit=self.memory_limit, extension_dir=self.extension_dir, s3=s3,
            retry=RetryPolicy(attempts=self.write_attempts))

    def open(self) -> StoreBackend:
        """The backend this configuration names (cheap: the lakehouse's attached connection is kept per
        process and reused)."""
        if self.backend == "lakehouse":
            return LakehouseBackend(self.lakehouse_settings())
        if not self.path:
            raise ValueError("the embedded store needs the path of its DuckDB file (resource setting path)")
        return EmbeddedBackend(Warehouse(path=self.path, lock_timeout_s=self.lock_timeout_s,
                                         threads=self.threads, memory_limit=self.memory_limit))

    def describe(self) -> str:
        """Which warehouse this is, for logs and materialization metadata (no secrets)."""
        if self.backend == "lakehouse":
            return self.lakehouse_settings().describe()
        return f"DuckDB file {self.path}"

    # -- the operations stages use (see base.StoreBackend) -------------------------------------------------

    def session(self):
        return self.open().session()

    def read(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        return self.open().read()

    def write(self) -> ContextManager[duckdb.DuckDBPyConnection]:
        return self.open().write()

    def transaction(self, work: Callable[[duckdb.DuckDBPyConnection], T],
                    stats: TransactionStats | None = None) -> T:
        return self.open().transaction(work, stats)

    def lock(self, exclusive: bool = True) -> ContextManager[None]:
        return self.open().lock(exclusive)

    def export_partition(self, query: str, params: list | None, dest: Path) -> int:
        return self.open().export_partition(query, params, dest)

    def table_exists(self, table: str) -> bool:
        return self.open().table_exists(table)

    def replace_partition(self, table: str, lang: str, source_sql: str, params: list | None = None,
                          stats: TransactionStats | None = None) -> int:
        """Replace ``table``'s rows of ``lang`` with ``source_sql``'s rows in one transaction (run again if it
        loses a commit race on the lakehouse); returns the rows inserted."""
        return self.open().replace_partition(table, lang, source_sql, params, stats)

    def partition_transaction(self, table: str, lang: str, work: Callable[[duckdb.DuckDBPyConnection], T],
                              stats: TransactionStats | None = None) -> T:
        """Run ``work`` as one write transaction of ``table``'s partition ``lang`` (see
        :meth:`StoreBackend.partition_transaction`)."""
        return self.open().partition_transaction(table, lang, work, stats)

    @property
    def primary_keys(self) -> bool:
        return self.backend != "lakehouse"

    # -- dbt -----------------------------------------------------------------------------------------------

    def dbt_env(self) -> dict[str, str]:
        """The environment dbt/profiles.yml reads to build on this store: its target (``local``: the DuckDB
        file; ``lakehouse``: the DuckLake attached as the target database, extensions from the wheels)."""
        if self.backend != "lakehouse":
            return {"XINST_DBT_TARGET": "local", "XINST_DBT_WAREHOUSE": self.path}
        settings = self.lakehouse_settings()
        return {
            "XINST_DBT_TARGET": "lakehouse",
            "XINST_DBT_EXTENSIONS": str(extension_directory(settings.extension_dir)),
            "XINST_DBT_LAKEHOUSE_CATALOG": settings.catalog_uri,
            "XINST_DBT_LAKEHOUSE_DATA": settings.resolved_data_path(),
            "XINST_DBT_LAKEHOUSE_SCHEMA": settings.metadata_schema,
        }


def backend_of(store: "Store | Warehouse | StoreBackend") -> StoreBackend:
    """The backend that holds the tables of ``store``: a :class:`Store` resource's, a ``Warehouse`` file as the
    embedded backend, or a backend itself. The store's table modules accept any of them."""
    if isinstance(store, Store):
        return store.open()
    if isinstance(store, Warehouse):
        return EmbeddedBackend(store)
    return store
