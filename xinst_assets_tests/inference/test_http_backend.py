"""The HTTP backend against a real local OpenAI-compatible server (completions and chat): results, constrained
choice and its exact fallbacks, retries, timeouts, keys, limits."""

from __future__ import annotations

import random
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from xinst_assets.core.prompts import JUDGE_CHOICES, DecodingParams, greedy, judge_prompt, pairwise_judge_prompt
from xinst_assets.inference.base import (
    InferenceBackend,
    InferenceError,
    InferenceHTTPError,
    InferenceTimeout,
    TransientHTTPError,
    TransientInferenceError,
)
from xinst_assets.inference.http_backend import (
    HTTPBackend,
    HTTPConfig,
    backoff_delay,
    chat_body,
    chat_top_logprobs,
    completion_body,
    continued_turn_logprob,
    echoed_continuation_logprob,
    generation_from_chat_response,
    generation_from_response,
    split_body,
)
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets_tests.inference.conftest import PAIRS, PROMPTS
from xinst_assets_tests.inference.openai_server import OpenAICompatibleServer

FAST_RETRIES = {"max_retries": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
# A request's time limit where the test expects an answer: never reached by the local server, however loaded the
# machine (a timeout there would be retried and break the request counts). The timeout test sets its own.
ANSWER_TIMEOUT_S = 300.0


def flat(dists: list[dict[str, float]]) -> list[float]:
    return [d[c] for d in dists for c in JUDGE_CHOICES]


def make_backend(server: OpenAICompatibleServer, **overrides) -> HTTPBackend:
    settings = dict(base_url=server.base_url, model="tiny", timeout_s=ANSWER_TIMEOUT_S, **FAST_RETRIES)
    settings.update(overrides)
    return HTTPBackend(HTTPConfig(**settings))


def test_generations_over_http_equal_the_served_model_in_process(
    live_server: OpenAICompatibleServer, backend: TransformersBackend
) -> None:
    client = make_backend(live_server, max_concurrency=3)
    assert isinstance(client, InferenceBackend)
    remote = client.generate(PROMPTS, greedy(6))
    assert [g.text for g in remote] == [g.text for g in backend.generate(PROMPTS, greedy(6))]
    assert all(g.finish_reason == "length" and g.completion_tokens == 6 for g in remote)
    assert live_server.requests[0]["temperature"] == 0.0 and live_server.requests[0]["max_tokens"] == 6


def test_choice_probabilities_over_http_equal_the_in_process_ones(
    live_server: OpenAICompatibleServer, backend: TransformersBackend
) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS]
    local = backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    client = make_backend(live_server, top_logprobs=len(backend.tokenizer))  # the whole vocabulary listed
    assert flat(client.choice_logprobs(prompts, list(JUDGE_CHOICES))) == pytest.approx(flat(local), abs=1e-5)
    assert all("echo" not in body for body in live_server.requests)


def test_choices_missing_from_the_top_k_are_scored_exactly_through_echo(
    live_server: OpenAICompatibleServer, backend: TransformersBackend
) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS[:2]]
    local = backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    client = make_backend(live_server, top_logprobs=1, max_concurrency=1)
    assert flat(client.choice_logprobs(prompts, list(JUDGE_CHOICES))) == pytest.approx(flat(local), abs=1e-5)
    assert any(body.get("echo") for body in live_server.requests)


def test_guided_choice_is_sent_in_the_extra_body_when_configured(live_server: OpenAICompatibleServer) -> None:
    client = make_backend(live_server, guided_choice=True, top_logprobs=1, exact_fallback=False)
    [dist] = client.choice_logprobs([judge_prompt(*PAIRS[0], "Indonesian")], list(JUDGE_CHOICES))
    assert live_server.requests[0]["guided_choice"] == ["1", "2", "3"]
    assert sum(dist.values()) == pytest.approx(1.0)  # the forced choice token always carries a probability


def test_503s_are_retried_with_backoff_until_the_server_answers(live_server: OpenAICompatibleServer) -> None:
    live_server.fail_next = 2
    client = make_backend(live_server)
    [generation] = client.generate(["Pasar"], greedy(3))
    assert generation.completion_tokens == 3
    assert (client.requests_sent, client.retries) == (3, 2)


def test_a_server_still_failing_after_the_retries_raises_a_transient_error_with_the_status(
    live_server: OpenAICompatibleServer,
) -> None:
    live_server.fail_next = 10
    client = make_backend(live_server)
    with pytest.raises(TransientHTTPError, match="HTTP 503 on attempt 3 of 3") as info:
        client.generate(["Pasar"], greedy(3))
    assert info.value.status == 503 and client.requests_sent == 3


def test_a_timeout_is_retried_then_reported_clearly(live_server: OpenAICompatibleServer) -> None:
    live_server.hold()  # never answers while the client waits: every attempt times out
    client = make_backend(live_server, timeout_s=0.2, max_retries=1)
    with pytest.raises(InferenceTimeout, match=r"timed out after 0.2 s .* on attempt 2 of 2; .*raise timeout_s"):
        client.generate(["Pasar"], greedy(3))
    assert client.requests_sent == 2 and client.retries == 1
    assert isinstance(InferenceTimeout("x"), TimeoutError)


def test_a_refused_connection_is_a_transient_error_naming_the_url() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HTTPBackend(HTTPConfig(base_url=f"http://127.0.0.1:{port}/v1", model="tiny", **FAST_RETRIES))
    with pytest.raises(TransientInferenceError, match=f"POST http://127.0.0.1:{port}/v1/completions failed"):
        client.generate(["Pasar"], greedy(3))
    assert client.requests_sent == 3


def test_the_api_key_comes_from_the_named_environment_variable_and_is_never_shown(
    live_server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_server.reset(api_key="sk-test-secret-123")
    monkeypatch.setenv("XINST_TEST_API_KEY", "sk-test-secret-123")
    client = make_backend(live_server, api_key_env="XINST_TEST_API_KEY")
    assert client.generate(["Pasar"], greedy(2))[0].completion_tokens == 2
    assert "sk-test-secret-123" not in repr(client) and "sk-test-secret-123" not in repr(client.config)


def test_a_wrong_key_fails_at_once_without_retries(
    live_server: OpenAICompatibleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_server.reset(api_key="sk-right")
    monkeypatch.setenv("XINST_TEST_API_KEY", "sk-wrong")
    client = make_backend(live_server, api_key_env="XINST_TEST_API_KEY")
    with pytest.raises(InferenceHTTPError, match="HTTP 401") as info:
        client.generate(["Pasar"], greedy(2))
    assert info.value.status == 401 and client.requests_sent == 1
    assert "sk-wrong" not in str(info.value)


def test_a_missing_key_variable_is_a_clear_error_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XINST_TEST_API_KEY", raising=False)
    with pytest.raises(InferenceError, match="XINST_TEST_API_KEY .* is not set"):
        HTTPBackend(HTTPConfig(base_url="http://127.0.0.1:9/v1", model="tiny", api_key_env="XINST_TEST_API_KEY"))


def test_no_more_than_max_concurrency_requests_are_in_flight(live_server: OpenAICompatibleServer) -> None:
    """The server holds every request until the test lets one go: the client has exactly as many requests in
    flight as it may (2) at each step, whatever the speed of either side, and sends the next one only when one
    is answered."""
    live_server.hold()
    client = make_backend(live_server, max_concurrency=2)
    with ThreadPoolExecutor(max_workers=1) as caller:
        outputs = caller.submit(client.generate, ["Pasar"] * 6, greedy(2))
        for answered in range(6):
            expected = (min(answered + 2, 6), min(2, 6 - answered))  # (received, in flight)
            assert live_server.wait_until(lambda s: (s.received, s.in_flight) == expected), (
                f"after {answered} answers: received {live_server.received}, in flight {live_server.in_flight}, "
                f"expected {expected}")
            live_server.release()
        assert len(outputs.result()) == 6
    assert live_server.max_in_flight == 2 and live_server.received == 6


def test_sampling_params_map_to_the_completions_body() -> None:
    body, warnings = completion_body("m", "p", DecodingParams(max_new_tokens=9, stop=("###",)))
    assert body == {"model": "m", "prompt": "p", "max_tokens": 9, "n": 1, "temperature": 0.7, "top_p": 0.9,
                    "top_k": 50, "seed": 0, "stop": ["###"]}
    assert warnings and "no_repeat_ngram_size=6" in warnings[0]
    greedy_body, none = completion_body("m", "p", greedy(4), send_top_k=False)
    assert (greedy_body["temperature"], "top_k" in greedy_body, none) == (0.0, False, [])
    with pytest.raises(InferenceError, match="not part of the OpenAI completions API"):
        completion_body("m", "p", DecodingParams(), no_repeat_ngram="error")


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 60.0, None, rng) for a in range(8)]
    assert all(0 <= d <= min(60.0, 2**a) for a, d in enumerate(delays))
    assert backoff_delay(0, 1.0, 60.0, 30.0, rng) >= 30.0
    assert backoff_delay(0, 1.0, 60.0, 3600.0, rng) == 60.0


def test_responses_map_to_generations_and_echo_offsets_to_a_choice_logprob() -> None:
    data = {"choices": [{"text": "Hujan###x", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    assert generation_from_response(data, ["###"]).text == "Hujan"
    echoed = {"choices": [{"logprobs": {"text_offset": [0, 3, 5, 6], "token_logprobs": [None, -1.0, -0.5, -2.0]}}]}
    assert echoed_continuation_logprob(echoed, 5, "1") == -0.5  # the token at offset 5, not the generated one
    assert echoed_continuation_logprob(echoed, 4, "1") is None  # no token starts there: merged with the prompt
    with pytest.raises(InferenceError, match="unexpected completions response"):
        generation_from_response({"error": "x"})


# --- chat completions ----------------------------------------------------------------------------------------


def chat_client(server: OpenAICompatibleServer, **overrides) -> HTTPBackend:
    return make_backend(server, chat=True, **overrides)


def test_chat_generations_over_http_equal_the_model_with_its_chat_template_in_process(
    live_server: OpenAICompatibleServer, chat_backend: TransformersBackend
) -> None:
    client = chat_client(live_server, max_concurrency=3)
    remote = client.generate(PROMPTS, greedy(6))
    assert [g.text for g in remote] == [g.text for g in chat_backend.generate(PROMPTS, greedy(6))]
    first = live_server.requests[0]
    assert first["messages"][0]["role"] == "user" and first["messages"][0]["content"] in PROMPTS
    assert first["max_completion_tokens"] == 6 and "prompt" not in first
    assert client.fingerprint().endswith(":chat") and "api=chat" in repr(client)


def test_a_pairwise_judgement_over_the_chat_endpoint_is_the_chat_models_own(
    live_server: OpenAICompatibleServer, chat_backend: TransformersBackend
) -> None:
    prompts = [pairwise_judge_prompt(i, r, "-", "Indonesian") for i, r in PAIRS[:2]]
    remote = chat_client(live_server).generate(prompts, greedy(8))
    assert [g.text for g in remote] == [g.text for g in chat_backend.generate(prompts, greedy(8))]


def test_chat_choice_probabilities_from_the_top_logprobs_equal_the_in_process_ones(
    live_server: OpenAICompatibleServer, chat_backend: TransformersBackend
) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS]
    local = chat_backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    vocab = len(chat_backend.tokenizer)
    live_server.max_top_logprobs = vocab  # vLLM's --max-logprobs raised to the whole vocabulary
    client = chat_client(live_server, top_logprobs=vocab)
    assert flat(client.choice_logprobs(prompts, list(JUDGE_CHOICES))) == pytest.approx(flat(local), abs=1e-5)
    assert all(body["logprobs"] is True and "prompt_logprobs" not in body for body in live_server.requests)


def test_chat_choices_missing_from_the_top_k_are_scored_exactly_from_the_continued_turn(
    live_server: OpenAICompatibleServer, chat_backend: TransformersBackend
) -> None:
    prompts = [judge_prompt(i, r, "Indonesian") for i, r in PAIRS[:2]]
    local = chat_backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    client = chat_client(live_server, top_logprobs=1, max_concurrency=1)
    assert flat(client.choice_logprobs(prompts, list(JUDGE_CHOICES))) == pytest.approx(flat(local), abs=1e-5)
    continued = [b for b in live_server.requests if b.get("continue_final_message")]
    assert continued and all(b["prompt_logprobs"] == 0 and b["messages"][-1]["role"] == "assistant"
                             for b in continued)


def test_a_chat_server_that_returns_no_logprobs_is_scored_exactly_through_the_fallback(
    live_server: OpenAICompatibleServer, chat_backend: TransformersBackend
) -> None:
    live_server.chat_logprobs = False
    prompts = [judge_prompt(*PAIRS[1], "Indonesian")]
    local = chat_backend.choice_logprobs(prompts, list(JUDGE_CHOICES))
    client = chat_client(live_server, max_concurrency=1)
    assert flat(client.choice_logprobs(prompts, list(JUDGE_CHOICES))) == pytest.approx(flat(local), abs=1e-5)


def test_a_chat_server_without_any_logprobs_fails_with_the_reason_instead_of_guessing(
    live_server: OpenAICompatibleServer,
) -> None:
    live_server.chat_logprobs = live_server.prompt_logprobs = False
    client = chat_client(live_server, max_concurrency=1)
    with pytest.raises(InferenceError, match="refused the exact fallback .*prompt_logprobs.*HTTP 400"):
        client.choice_logprobs([judge_prompt(*PAIRS[0], "Indonesian")], list(JUDGE_CHOICES))
    # Without the fallback, a server that lists no choice is an error too (never a made-up label).
    with pytest.raises(InferenceError, match="none of the choices"):
        chat_client(live_server, exact_fallback=False).choice_logprobs([judge_prompt(*PAIRS[0], "Indonesian")],
                                                                       list(JUDGE_CHOICES))


def test_guided_choice_goes_to_the_chat_endpoint_too(live_server: OpenAICompatibleServer) -> None:
    client = chat_client(live_server, guided_choice=True, top_logprobs=1, exact_fallback=False)
    [dist] = client.choice_logprobs([judge_prompt(*PAIRS[0], "Indonesian")], list(JUDGE_CHOICES))
    assert live_server.requests[0]["guided_choice"] == ["1", "2", "3"]
    assert sum(dist.values()) == pytest.approx(1.0)


def test_chat_requests_and_responses_map_to_and_from_the_openai_fields() -> None:
    body, warnings = chat_body("m", "p", DecodingParams(max_new_tokens=9, stop=("###",)))
    assert body == {"model": "m", "messages": [{"role": "user", "content": "p"}], "max_completion_tokens": 9,
                    "n": 1, "temperature": 0.7, "top_p": 0.9, "top_k": 50, "seed": 0, "stop": ["###"]}
    assert warnings and "OpenAI chat API" in warnings[0]
    named, extra = split_body(body, "chat/completions")
    assert extra == {"top_k": 50} and "messages" in named
    data = {"choices": [{"message": {"content": "Hujan###x"}, "finish_reason": "length",
                         "logprobs": {"content": [{"token": "1", "logprob": -0.1,
                                                   "top_logprobs": [{"token": " 2", "logprob": -2.5}]}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    generation = generation_from_chat_response(data, ["###"])
    assert (generation.text, generation.finish_reason) == ("Hujan", "length")
    assert chat_top_logprobs(data) == {"1": -0.1, " 2": -2.5}
    assert chat_top_logprobs({"choices": [{"logprobs": None}]}) == {}
    continued = {"prompt_logprobs": [None, {"4": {"logprob": -1.0}}, {"9": {"logprob": -0.25}}, {"7": {"logprob": -0.5}}]}
    assert continued_turn_logprob(continued, 3) == -0.5  # the token after the 3-token generation prompt
    assert continued_turn_logprob(continued, 2) == -0.75  # a two-token answer: the sum
    assert continued_turn_logprob(continued, 4) is None  # nothing follows: the answer merged into the prompt
    assert continued_turn_logprob({"choices": []}, 3) is None  # the server sent no prompt_logprobs
