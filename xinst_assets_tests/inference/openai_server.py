"""A small, real OpenAI-compatible completions server for tests, serving a transformers model on 127.0.0.1.

It implements the part of ``POST /v1/completions`` that xinst uses, the way vLLM's server answers it:
``prompt`` (one string), ``max_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``top_k``, ``seed``, ``stop``,
``logprobs`` (top-k of the first generated token, plus the sampled token; with ``max_tokens`` 1), ``echo``
(the prompt's tokens with their log-probabilities and character offsets), ``guided_choice`` (the generated token
is the most likely token that spells one of the choices), and a Bearer API key when one is set.

Test controls: ``fail_next`` answers the next N requests with ``fail_status`` (503 by default), ``delay_s``
sleeps before answering (timeouts), ``requests`` keeps every request body, ``max_in_flight`` records the most
requests handled at once.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.inference.transformers_backend import TransformersBackend


class OpenAICompletionsServer:
    """Serve ``backend`` until :meth:`stop`; use as a context manager. ``base_url`` ends in ``/v1``."""

    def __init__(self, backend: TransformersBackend, api_key: str | None = None) -> None:
        self.backend, self.api_key = backend, api_key
        self.fail_next, self.fail_status, self.delay_s = 0, 503, 0.0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self._state = threading.Lock()
        self._model = threading.Lock()  # one model call at a time
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAICompletionsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self, api_key: str | None = None) -> None:
        """Clear the failure, delay and request log (between tests sharing one server)."""
        with self._state:
            self.fail_next, self.fail_status, self.delay_s = 0, 503, 0.0
            self.requests.clear()
            self.in_flight = self.max_in_flight = 0
            self.api_key = api_key

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling ------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._state:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload, headers = self._answer(request)
        except Exception as exc:  # noqa: BLE001 - a server error is a 500, as a real server answers
            status, payload, headers = 500, {"error": {"message": f"{type(exc).__name__}: {exc}"}}, {}
        finally:
            with self._state:
                self.in_flight -= 1
        data = json.dumps(payload).encode("utf-8")
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def _answer(self, request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any], dict[str, str]]:
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"{}")
        with self._state:
            self.requests.append(body)
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
            delay, api_key = self.delay_s, self.api_key
        if request.path != "/v1/completions":
            return 404, {"error": {"message": f"no route {request.path}"}}, {}
        if api_key is not None and request.headers.get("Authorization") != f"Bearer {api_key}":
            return 401, {"error": {"message": "invalid API key"}}, {}
        if fail:
            return self.fail_status, {"error": {"message": "server overloaded, try again"}}, {"Retry-After": "0"}
        if delay:
            time.sleep(delay)
        if not isinstance(body.get("prompt"), str):
            return 400, {"error": {"message": "this server takes one prompt string"}}, {}
        with self._model:
            return 200, self._complete(body), {}

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt: str = body["prompt"]
        max_tokens = int(body.get("max_tokens", 16))
        temperature = float(body.get("temperature", 1.0))
        want_logprobs = body.get("logprobs")
        guided = body.get("guided_choice") or (body.get("structured_outputs") or {}).get("choice")
        tokenizer = self.backend.tokenizer
        prompt_tokens = len(tokenizer(prompt, add_special_tokens=self.backend.add_special_tokens)["input_ids"])
        logprobs: dict[str, Any] | None = None
        if want_logprobs is not None or guided:
            if max_tokens != 1:
                raise ValueError("this test server returns logprobs / guided choice only with max_tokens=1")
            ranked = self.backend.top_logprobs([prompt], len(tokenizer))[0]  # whole vocabulary, best first
            if guided:
                ranked_choice = [r for r in ranked if r[1].strip() in guided]
                _, text, logprob = ranked_choice[0]
            else:
                _, text, logprob = ranked[0]
            k = int(want_logprobs or 0)
            top = {t: lp for _, t, lp in ranked[:k]}
            logprobs = {"tokens": [text], "token_logprobs": [logprob], "top_logprobs": [top],
                        "text_offset": [len(prompt)]}
            finish, completion_tokens = "length", 1
        else:
            params = DecodingParams(
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else 0.7,
                top_p=float(body.get("top_p", 1.0)),
                top_k=body.get("top_k"),
                no_repeat_ngram_size=None,
                max_new_tokens=max_tokens,
                seed=body.get("seed"),
                stop=tuple(body.get("stop") or ()),
            )
            generation = self.backend.generate([prompt], params)[0]
            text, finish, completion_tokens = generation.text, generation.finish_reason, generation.completion_tokens
        if body.get("echo"):
            echoed = self.backend.token_logprobs(prompt)
            head = {
                "tokens": [t for _, t, _, _ in echoed],
                "token_logprobs": [lp for _, _, _, lp in echoed],
                "top_logprobs": [None if lp is None else {t: lp} for _, t, _, lp in echoed],
                "text_offset": [offset for _, _, offset, _ in echoed],
            }
            if logprobs is not None:
                head = {name: values + logprobs[name] for name, values in head.items()}
            logprobs = head
            text = prompt + text
        return {
            "id": f"cmpl-{len(self.requests)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
