"""The lakehouse with its data files on S3-compatible object storage: moto's S3 server on 127.0.0.1, the
catalog on the embedded Postgres, DuckDB's httpfs from its wheel."""

from __future__ import annotations

import boto3
import pytest

from xinst_assets.store import Store


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "xinst-test", "AWS_SECRET_ACCESS_KEY": "xinst-test-secret",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


def test_partitions_written_to_a_lakehouse_on_s3_compatible_storage_land_as_objects_and_read_back(
        s3_endpoint: str, catalog_uri: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    s3 = boto3.client("s3", endpoint_url=f"http://{s3_endpoint}", region_name="us-east-1")
    s3.create_bucket(Bucket="xinst-lake")
    monkeypatch.setenv("XINST_LAKEHOUSE_CATALOG", catalog_uri)
    store = Store.from_env(tmp_path, {"XINST_STORE": "lakehouse", "XINST_LAKEHOUSE_DATA": "s3://xinst-lake/warehouse/",
                                      "XINST_LAKEHOUSE_S3_ENDPOINT": s3_endpoint, "XINST_LAKEHOUSE_S3_USE_SSL": "false",
                                      "XINST_LAKEHOUSE_S3_REGION": "us-east-1"})
    store = store.model_copy(update={"extension_dir": str(tmp_path / "extensions")})
    with store.write() as con:
        con.execute("CREATE TABLE docs (lang VARCHAR, i BIGINT, text VARCHAR)")
    for lang in ("sw", "ta"):
        assert store.replace_partition("docs", lang, "SELECT ? AS lang, range AS i, repeat('maneno ', 20) AS text "
                                       "FROM range(2000)", [lang]) == 2000
    with store.read() as con:
        assert con.execute("SELECT lang, count(*) FROM docs GROUP BY lang ORDER BY lang").fetchall() \
            == [("sw", 2000), ("ta", 2000)]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="xinst-lake", Prefix="warehouse/").get("Contents", [])]
    assert any(key.endswith(".parquet") for key in keys), keys
