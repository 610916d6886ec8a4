"""Connections as users have them: SYNC_ES_* / SYNC_PG_* read once, checked, passed on as EnvVars
(pure: no servers)."""

from __future__ import annotations

import base64

import dagster as dg
import pytest

from sync_pipeline import settings
from sync_pipeline.defs.resources import resources_for
from sync_pipeline.io.search import search_client
from sync_pipeline.settings import SettingsError, cloud_id_url, with_password

CLOUD_ID = "shop:" + base64.b64encode(b"europe-west1.gcp.cloud.es.io:9243$abc123$kib456").decode()


def test_an_elastic_cloud_id_stands_for_its_https_url():
    assert cloud_id_url(CLOUD_ID) == "https://abc123.europe-west1.gcp.cloud.es.io:9243"
    plain = "x:" + base64.b64encode(b"us-east-1.aws.found.io$es9$kb9").decode()
    assert cloud_id_url(plain) == "https://es9.us-east-1.aws.found.io:443"
    loaded = settings.load({"SYNC_ES_CLOUD_ID": CLOUD_ID, "SYNC_ES_API_KEY": "a2V5"})
    assert loaded.es_url == "https://abc123.europe-west1.gcp.cloud.es.io:9243" and loaded.es.api_key == "a2V5"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SYNC_ES_CLOUD_ID": "shop:not-base64!"}, "SYNC_ES_CLOUD_ID is not an Elastic Cloud id"),
        ({"SYNC_ES_CLOUD_ID": CLOUD_ID, "SYNC_ES_URL": "https://x:9200"}, "not both"),
        ({"SYNC_ES_USERNAME": "sync"}, "SYNC_ES_USERNAME and SYNC_ES_PASSWORD go together"),
        ({"SYNC_ES_API_KEY": "k", "SYNC_ES_BEARER_TOKEN": "t"}, "one kind of Elasticsearch credentials"),
        ({"SYNC_ES_CA_CERTS": "/no/such/ca.crt"}, "SYNC_ES_CA_CERTS=/no/such/ca.crt: no such file"),
        ({"SYNC_ES_SSL_FINGERPRINT": "ab:cd"}, "SHA-256 (64 hex digits)"),
        ({"SYNC_ES_REQUEST_TIMEOUT": "soon"}, "SYNC_ES_REQUEST_TIMEOUT='soon' is not a number"),
        ({"SYNC_ES_VERIFY_CERTS": "maybe"}, "SYNC_ES_VERIFY_CERTS must be one of"),
        ({"SYNC_PG_STATEMENT_TIMEOUT": "0"}, "SYNC_PG_STATEMENT_TIMEOUT must be more than 0"),
        ({"SYNC_PG_IDLE_IN_TRANSACTION_TIMEOUT": "soon"}, "'soon' is not a number of seconds"),
    ],
)
def test_a_connection_setting_that_cannot_work_names_the_variable(env, expected):
    with pytest.raises(SettingsError) as caught:
        settings.load(env)
    assert expected in str(caught.value)


def test_session_limits_default_to_a_range_read_and_a_drains_retries():
    assert settings.load({}).sessions == settings.SessionLimits(300.0, 900.0)
    loaded = settings.load({"SYNC_PG_STATEMENT_TIMEOUT": "30", "SYNC_PG_IDLE_IN_TRANSACTION_TIMEOUT": "0.5"})
    assert loaded.sessions == settings.SessionLimits(statement_seconds=30.0, idle_in_transaction_seconds=0.5)


def test_a_separate_postgres_password_joins_a_url_that_names_only_the_user():
    assert with_password("postgresql://sync@db:5432/x?sslmode=verify-full", "p@ss/w") == (
        "postgresql://sync:p%40ss%2Fw@db:5432/x?sslmode=verify-full"
    )
    assert with_password("postgresql://sync:own@db/x", "other") == "postgresql://sync:own@db/x"
    assert with_password("postgresql://db/x", "p") == "postgresql://db/x"  # no user: PGUSER/PGPASSFILE
    loaded = settings.load({"SYNC_PG_URL": "postgresql://sync@db/x", "SYNC_PG_PASSWORD": "s3cret"})
    assert loaded.pg_url == "postgresql://sync:s3cret@db/x" and "s3cret" not in repr(loaded)


def test_credentials_reach_the_client_and_tls_options_only_an_https_one(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = settings.load(
        {
            "SYNC_ES_USERNAME": "sync",
            "SYNC_ES_PASSWORD": "pw",
            "SYNC_ES_CA_CERTS": str(ca),
            "SYNC_ES_HTTP_COMPRESS": "1",
        }
    ).es
    client = search_client("http://127.0.0.1:9200", options=options)
    assert client.transport.node_pool.get().config.http_compress is True
    assert _sent_headers(client)["authorization"] == "Basic c3luYzpwdw=="  # base64 of sync:pw
    keyed = search_client("http://127.0.0.1:9200", options=settings.load({"SYNC_ES_API_KEY": "a2V5"}).es)
    assert _sent_headers(keyed)["authorization"] == "ApiKey a2V5"
    pair = search_client("http://127.0.0.1:9200", options=settings.load({"SYNC_ES_API_KEY": "id:key"}).es)
    assert _sent_headers(pair)["authorization"] == "ApiKey aWQ6a2V5"  # id:key is encoded
    bearer = search_client("http://127.0.0.1:9200", options=settings.load({"SYNC_ES_BEARER_TOKEN": "tok"}).es)
    assert _sent_headers(bearer)["authorization"] == "Bearer tok"


def _sent_headers(client) -> dict[str, str]:
    return dict(client.transport.node_pool.get().config.headers)


def test_secrets_reach_dagster_as_environment_variables_never_as_values():
    env = {
        "SYNC_PG_URL": "postgresql://sync@db/x",
        "SYNC_PG_PASSWORD": "pg-secret",
        "SYNC_ES_URL": "https://es:9200",
        "SYNC_ES_USERNAME": "sync",
        "SYNC_ES_PASSWORD": "es-secret",
    }
    resources = resources_for(settings.load(env))
    es, pg = resources["elasticsearch"], resources["postgres"]
    assert isinstance(es.password, dg.EnvVar) and es.password.env_var_name == "SYNC_ES_PASSWORD"
    assert isinstance(pg.password, dg.EnvVar) and pg.password.env_var_name == "SYNC_PG_PASSWORD"
    assert isinstance(es.url, dg.EnvVar) and isinstance(pg.url, dg.EnvVar)
    assert es.username == "sync" and es.api_key is None
    cloud = resources_for(settings.load({"SYNC_ES_CLOUD_ID": CLOUD_ID, "SYNC_ES_API_KEY": "k"}))[
        "elasticsearch"
    ]
    assert cloud.url == "https://abc123.europe-west1.gcp.cloud.es.io:9243"  # no secret, no variable holds it
    assert isinstance(cloud.api_key, dg.EnvVar)


def test_the_dagster_resource_carries_every_connection_option_it_has_a_field_for(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    env = {
        "SYNC_ES_URL": "https://es:9200",
        "SYNC_ES_BEARER_TOKEN": "tok",
        "SYNC_ES_CA_CERTS": str(ca),
        "SYNC_ES_VERIFY_CERTS": "false",
        "SYNC_ES_REQUEST_TIMEOUT": "7",
        "SYNC_ES_HTTP_COMPRESS": "true",
    }
    loaded = settings.load(env)
    resource = resources_for(loaded)["elasticsearch"]
    assert isinstance(resource.bearer_token, dg.EnvVar)
    # in a run, Dagster resolves the EnvVar to the variable's value
    options = resource.model_copy(update={"bearer_token": "tok"}).options()
    assert (options.ca_certs, options.verify_certs, options.request_timeout, options.http_compress) == (
        str(ca),
        False,
        7.0,
        True,
    )
    assert options == loaded.es


def test_a_run_started_by_dagster_signs_for_aws_and_expects_the_backend_the_settings_name():
    # the Dagster resource is how the UI's and the daemon's runs reach the search server: without
    # the backend and the SigV4 region, a run against Amazon OpenSearch Service would go unsigned
    env = {
        "SYNC_ES_URL": "https://search-shop.eu-west-1.es.amazonaws.com",
        "SYNC_SEARCH_BACKEND": "opensearch",
        "SYNC_SEARCH_AUTH": "aws-sigv4",
        "SYNC_AWS_REGION": "eu-west-1",
        "SYNC_AWS_SERVICE": "es",
    }
    loaded = settings.load(env)
    options = resources_for(loaded)["elasticsearch"].options()
    assert (options.backend, options.aws_region, options.aws_service) == ("opensearch", "eu-west-1", "es")
    assert options == loaded.es


def test_docs_show_the_grants_the_demo_spec_needs_as_the_command_prints_them(capsys, monkeypatch):
    from pathlib import Path

    from sync_pipeline.apps.cli import main

    monkeypatch.delenv("SYNC_PG_URL", raising=False)  # the database name would appear for logical specs
    root = Path(__file__).resolve().parents[2]
    assert main(["--config", str(root / "sync.yaml"), "grants", "--spec", "products"]) == 0
    printed = capsys.readouterr().out.strip()
    assert f"```\n{printed}\n```" in (root / "docs" / "grants.md").read_text()
    # the versioned indexes only: `products_v*` would also cover an index `products_vendors`
    assert '"names": ["products", "/products_v[0-9]+/"]' in printed
    demo = ", ".join(
        f'"sync_pipeline_demo"."{t}"' for t in ("products", "categories", "tags", "product_tags", "reviews")
    )
    assert f"GRANT SELECT ON {demo}" in printed
    # what shows other roles' sessions is asked for, never granted by default
    assert "GRANT pg_read_all_stats" not in printed
    monkeypatch.chdir(root)
    assert main(["grants", "--spec", "products", "--with-stats"]) == 0
    assert "GRANT pg_read_all_stats" in capsys.readouterr().out


def test_grants_of_a_logical_spec_name_replication_temp_and_the_pg_hba_line():
    from sync_pipeline.core.cdc.grants import pg_grants, read_tables
    from sync_pipeline.core.spec.model import parse_specs

    spec = parse_specs(
        "specs:\n  - name: orders\n    capture: logical\n"
        "    source: {table: shop.orders, primary_key: id, updated_at: updated_at}\n"
        "    target: {index: orders}\n    partitions: {start: '2026-01-01'}\n"
    )[0]
    printed = pg_grants(spec, read_tables(spec), "reader", "shopdb")
    assert 'ALTER ROLE "reader" REPLICATION;' in printed
    assert 'GRANT TEMPORARY ON DATABASE "shopdb" TO "reader";' in printed  # the drain's staging table
    assert "hostssl shopdb reader" in printed and "physical replication only" in printed
    assert "GRANT pg_read_all_stats" not in printed


def test_grants_for_opensearch_print_the_security_plugins_role_as_the_docs_show_it(capsys, monkeypatch):
    from pathlib import Path

    from sync_pipeline.apps.cli import main

    monkeypatch.delenv("SYNC_PG_URL", raising=False)
    root = Path(__file__).resolve().parents[2]
    assert (
        main(["--config", str(root / "sync.yaml"), "grants", "--spec", "products", "--for", "opensearch"])
        == 0
    )
    printed = capsys.readouterr().out.strip()
    role = printed.split("\n\n")[0]
    assert f"```\n{role}\n```" in (root / "docs" / "grants.md").read_text()
    assert '"index_patterns": ["products", "/products_v[0-9]+/"]' in role
    assert "_security/role/" not in printed  # not Elasticsearch's format
    monkeypatch.setenv("SYNC_SEARCH_BACKEND", "opensearch")
    assert main(["--config", str(root / "sync.yaml"), "grants", "--spec", "products"]) == 0
    assert capsys.readouterr().out.strip() == printed
