"""A small, real OpenAI-compatible server for tests, serving a transformers model on 127.0.0.1.

It implements the parts of the two endpoints that xinst uses, the way vLLM's server answers them:

* ``POST /v1/completions``: ``prompt`` (one string), ``max_tokens``, ``temperature`` (0 = greedy), ``top_p``,
  ``top_k``, ``seed``, ``stop``, ``logprobs`` (top-k of the first generated token, plus the sampled token; with
  ``max_tokens`` 1), ``echo`` (the prompt's tokens with their log-probabilities and character offsets),
  ``guided_choice`` (the generated token is the most likely token that spells one of the choices).
* ``POST /v1/chat/completions``: ``messages`` laid out by the model's own chat template (``add_generation_prompt``,
  ``continue_final_message``), ``max_completion_tokens`` (or ``max_tokens``), the same sampling fields,
  ``logprobs`` with ``top_logprobs`` (the first generated token; with one token), ``guided_choice``, and
  vLLM's ``prompt_logprobs=0`` (each prompt token's own log-probability, ``None`` for the first).

A Bearer API key is checked when one is set. ``chat_logprobs=False`` makes the chat endpoint answer without
log-probabilities, as servers that do not implement them do (``logprobs: null``); ``prompt_logprobs=False``
makes it refuse vLLM's ``prompt_logprobs`` field with a 400, as OpenAI's API refuses unknown fields.

Test controls: ``fail_next`` answers the next N requests with ``fail_status`` (503 by default); :meth:`hold`
keeps every request waiting until the test lets it go with :meth:`release` (a timeout that cannot be won by a
fast server, and in-flight counts that do not depend on how fast anything runs); :meth:`wait_until` waits for
a state of the counters (``received``, ``in_flight``); ``requests`` keeps every request body, ``max_in_flight``
records the most requests handled at once; :meth:`reset` lets go of held requests and waits until every
request of the previous test has ended, so no test sees another's requests in its counters; ``max_top_logprobs`` bounds ``top_logprobs`` (vLLM's ``--max-logprobs``; 20 by default).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Self

from xinst_assets.core.prompts import DecodingParams
from xinst_assets.inference.transformers_backend import TransformersBackend


class OpenAICompatibleServer:
    """Serve ``backend`` (a raw-prompt :class:`TransformersBackend`) until :meth:`stop`; use as a context manager.
    ``base_url`` ends in ``/v1``."""

    def __init__(self, backend: TransformersBackend, api_key: str | None = None) -> None:
        if backend.chat:
            raise ValueError("serve a raw-prompt backend: the server applies the chat template itself")
        self.backend, self.api_key = backend, api_key
        self.fail_next, self.fail_status = 0, 503
        self.chat_logprobs = self.prompt_logprobs = True
        self.max_top_logprobs = 20
        self.requests: list[dict[str, Any]] = []
        self.received = self.in_flight = self.max_in_flight = 0
        self._holding, self._releases = False, 0
        self._epoch = 0  # one per test (reset): a request of an earlier test never reaches the model
        self._state = threading.Condition()  # guards the counters above; notified whenever one changes
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

    def start(self) -> OpenAICompatibleServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self, api_key: str | None = None, drain_timeout_s: float = 120.0) -> None:
        """Let go of held requests, wait until every request in flight has ended, then clear the failures,
        the request log and the counters (between tests sharing one server)."""
        with self._state:
            self._epoch += 1
            self._holding = False
            self._state.notify_all()
            if not self._state.wait_for(lambda: self.in_flight == 0, timeout=drain_timeout_s):
                raise RuntimeError(f"{self.in_flight} requests still in flight after {drain_timeout_s}s")
            self.fail_next, self.fail_status, self._releases = 0, 503, 0
            self.requests.clear()
            self.received = self.max_in_flight = 0
            self.api_key = api_key
            self.chat_logprobs = self.prompt_logprobs = True
            self.max_top_logprobs = 20

    def hold(self) -> None:
        """Keep every request from now on waiting, unanswered, until :meth:`release` lets it go."""
        with self._state:
            self._holding = True

    def release(self, count: int = 1) -> None:
        """Let ``count`` held (or future) requests go on, in the order they take them."""
        with self._state:
            self._releases += count
            self._state.notify_all()

    def wait_until(self, predicate: Callable[[OpenAICompatibleServer], bool], timeout_s: float = 60.0) -> bool:
        """Wait until ``predicate(server)`` holds (checked whenever a counter changes); False after
        ``timeout_s`` (a bound for a broken client, never reached by a correct one)."""
        with self._state:
            return self._state.wait_for(lambda: predicate(self), timeout=timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling ------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._state:
            self.received += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            epoch = self._epoch
            self._state.notify_all()
        try:
            status, payload, headers = self._answer(request, epoch)
        except Exception as exc:  # noqa: BLE001 - a server error is a 500, as a real server answers
            status, payload, headers = 500, {"error": {"message": f"{type(exc).__name__}: {exc}"}}, {}
        finally:
            with self._state:
                self.in_flight -= 1
                self._state.notify_all()
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

    def _wait_if_held(self, epoch: int) -> bool:
        """Wait while requests are held and none is released; False when the test ended meanwhile."""
        with self._state:
            self._state.wait_for(lambda: self._epoch != epoch or not self._holding or self._releases > 0)
            if self._epoch != epoch:
                return False
            if self._holding:
                self._releases -= 1
            return True

    def _answer(self, request: BaseHTTPRequestHandler, epoch: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length) or b"{}")
        with self._state:
            self.requests.append(body)
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
            api_key = self.api_key
        if request.path not in ("/v1/completions", "/v1/chat/completions"):
            return 404, {"error": {"message": f"no route {request.path}"}}, {}
        if api_key is not None and request.headers.get("Authorization") != f"Bearer {api_key}":
            return 401, {"error": {"message": "invalid API key"}}, {}
        if fail:
            return self.fail_status, {"error": {"message": "server overloaded, try again"}}, {"Retry-After": "0"}
        if not self._wait_if_held(epoch):
            return 503, {"error": {"message": "request of an earlier test"}}, {}
        if request.path == "/v1/chat/completions":
            return self._chat(body)
        if not isinstance(body.get("prompt"), str):
            return 400, {"error": {"message": "this server takes one prompt string"}}, {}
        with self._model:
            return 200, self._complete(body), {}

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, {"error": {"message": "messages must be a non-empty list"}}, {}
        if body.get("prompt_logprobs") is not None and not self.prompt_logprobs:
            return 400, {"error": {"message": "Unrecognized request argument supplied: prompt_logprobs"}}, {}
        if body.get("prompt_logprobs") not in (None, 0):
            return 400, {"error": {"message": "this server returns prompt_logprobs=0 only"}}, {}
        top_k = int(body.get("top_logprobs") or 0)
        if body.get("logprobs") and top_k > self.max_top_logprobs:
            return 400, {"error": {"message": f"top_logprobs must be at most {self.max_top_logprobs}"}}, {}
        tokenizer = self.backend.tokenizer
        continue_final = bool(body.get("continue_final_message", False))
        prompt = tokenizer.apply_chat_template(
            messages, tokenize=False, continue_final_message=continue_final,
            add_generation_prompt=bool(body.get("add_generation_prompt", not continue_final)))
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        guided = body.get("guided_choice") or (body.get("structured_outputs") or {}).get("choice")
        want_logprobs = bool(body.get("logprobs")) and self.chat_logprobs
        with self._model, self._no_special_tokens():  # the template wrote the special tokens it wants
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            logprobs: dict[str, Any] | None = None
            if want_logprobs or guided:
                if max_tokens != 1:
                    raise ValueError("this test server returns logprobs / guided choice only with max_tokens=1")
                ranked = self.backend.top_logprobs([prompt], len(tokenizer))[0]
                pick = [r for r in ranked if r[1].strip() in guided] if guided else ranked
                _, text, logprob = pick[0]
                if want_logprobs:
                    top = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for _, t, lp in ranked[:top_k]]
                    logprobs = {"content": [{"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8")),
                                             "top_logprobs": top}]}
                finish, completion_tokens = "length", 1
            else:
                generation = self.backend.generate([prompt], self._decoding(body, max_tokens))[0]
                text, finish, completion_tokens = generation.text, generation.finish_reason, generation.completion_tokens
            answer: dict[str, Any] = {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish, "logprobs": logprobs}],
                "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": completion_tokens,
                          "total_tokens": len(prompt_ids) + completion_tokens},
            }
            if body.get("prompt_logprobs") is not None:
                own = self.backend.token_logprobs(prompt)  # (id, text, offset, logprob), no special tokens added
                answer["prompt_logprobs"] = [
                    None if lp is None else {str(i): {"logprob": lp, "rank": None, "decoded_token": t}}
                    for i, t, _, lp in own]
        return 200, answer, {}

    @contextlib.contextmanager
    def _no_special_tokens(self) -> Iterator[None]:
        saved = self.backend.add_special_tokens
        self.backend.add_special_tokens = False
        try:
            yield
        finally:
            self.backend.add_special_tokens = saved

    @staticmethod
    def _decoding(body: dict[str, Any], max_tokens: int) -> DecodingParams:
        temperature = float(body.get("temperature", 1.0))
        return DecodingParams(
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else 0.7,
            top_p=float(body.get("top_p", 1.0)),
            top_k=body.get("top_k"),
            no_repeat_ngram_size=None,
            max_new_tokens=max_tokens,
            seed=body.get("seed"),
            stop=tuple(body.get("stop") or ()),
        )

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt: str = body["prompt"]
        max_tokens = int(body.get("max_tokens", 16))
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
            generation = self.backend.generate([prompt], self._decoding(body, max_tokens))[0]
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
