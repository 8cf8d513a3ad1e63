"""Retries for transient failures only.

Dagster's ``RetryPolicy`` retries every failure, a bad configuration included. xinst asks for a retry, with
exponential backoff, only when the failure is one that waiting can fix: another run holding the warehouse
lock past its timeout, or a network error / overloaded HTTP inference server.
"""

import contextlib
import sys
from typing import Iterator

from dagster import AssetExecutionContext, RetryRequested

from xinst_assets.inference.base import TransientInferenceError
from xinst_assets.resources.warehouse import WarehouseLockTimeout

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (WarehouseLockTimeout, TransientInferenceError)
MAX_RETRIES = 3
BASE_DELAY_S = 15


@contextlib.contextmanager
def retry_transient(context: AssetExecutionContext) -> Iterator[None]:
    """Turn a transient error into ``RetryRequested`` (15 s, 30 s, 60 s); let every other error fail the step."""
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):
            raise
        attempt = context.retry_number
        context.log.warning(f"transient failure (attempt {attempt + 1} of {MAX_RETRIES + 1}): {exc}")
        raise RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=BASE_DELAY_S * 2**attempt) from exc


def is_transient(exc: BaseException) -> bool:
    """Whether waiting can fix ``exc``: :data:`TRANSIENT_ERRORS`, or a network error of httpx (the HTTP
    inference backend's client; looked up only once loaded, so that stages without it do not import it)."""
    httpx = sys.modules.get("httpx")
    return isinstance(exc, TRANSIENT_ERRORS) or (httpx is not None and isinstance(exc, httpx.TransportError))
