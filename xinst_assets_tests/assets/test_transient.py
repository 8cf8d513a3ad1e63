"""Retries of transient failures: which errors are transient, and a step that fails once and then succeeds."""

import httpx
import pytest
from dagster import AssetExecutionContext, asset, materialize

import xinst_assets.assets.transient as transient
from xinst_assets.assets.transient import is_transient, retry_transient
from xinst_assets.inference.base import InferenceError, TransientInferenceError
from xinst_assets.resources.warehouse import WarehouseLockTimeout


@pytest.mark.parametrize("error, expected", [
    (WarehouseLockTimeout("held by another run"), True),
    (TransientInferenceError("503 from the server"), True),
    (httpx.ConnectError("connection refused"), True),
    (httpx.ReadTimeout("no answer"), True),
    (InferenceError("the model answered nothing"), False),
    (ValueError("bad configuration"), False),
    (httpx.HTTPStatusError("404", request=httpx.Request("GET", "http://127.0.0.1/"), response=httpx.Response(404)),
     False),
])
def test_only_errors_that_waiting_can_fix_are_transient(error, expected):
    assert is_transient(error) is expected


def _flaky_asset(failures: list[BaseException], attempts: list[int]):
    @asset
    def flaky(context: AssetExecutionContext) -> int:
        attempts.append(context.retry_number)
        with retry_transient(context):
            if failures:
                raise failures.pop(0)
        return len(attempts)

    return flaky


def test_a_transient_failure_is_retried_with_backoff_and_the_step_succeeds(monkeypatch):
    monkeypatch.setattr(transient, "BASE_DELAY_S", 0)
    attempts: list[int] = []
    result = materialize([_flaky_asset([WarehouseLockTimeout("busy"), httpx.ConnectError("refused")], attempts)])
    assert result.success
    assert attempts == [0, 1, 2]
    assert result.output_for_node("flaky") == 3


def test_any_other_failure_fails_the_step_at_once():
    attempts: list[int] = []
    result = materialize([_flaky_asset([ValueError("bad configuration")], attempts)], raise_on_error=False)
    assert not result.success
    assert attempts == [0]
