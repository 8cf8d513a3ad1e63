"""The evaluation asset through Dagster with tiny local models: who judges, and what a run reports."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from xinst_assets.config import XinstConfig
from xinst_assets.core.tiny_model import build_tiny_model
from xinst_assets.inference.base import ModelSpec
from xinst_assets.inference.transformers_backend import TransformersBackend
from xinst_assets.languages import load_registry
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, ModelRole
from xinst_assets.settings import SAMPLE_DIR
from xinst_assets_tests.conftest import materialize
from xinst_assets_tests.inference.openai_server import OpenAICompatibleServer
from xinst_assets_tests.tiny_replies import teach_reply

pytestmark = pytest.mark.slow

# Benchmarks are scored in one test (they add an lm-eval run per model).
SHORT = {"ops": {"evaluation": {"config": {"max_new_tokens": 6, "benchmarks": []}}}}
REPLY = "Chợ phiên ở làng tôi rất đông vui."
TEXTS = ["Write a short note about the market.", REPLY, "<score1>7</score1>"] * 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("evaluation")
    config = XinstConfig(registry=load_registry(), home=root / "home", raw_patterns=[str(SAMPLE_DIR / "raw")])
    assert materialize(config, ["seed_pairs", "eval_questions"], "vi").success
    models = {name: str(build_tiny_model(root / name, TEXTS, hidden_size=16, num_layers=1, num_heads=2,
                                         vocab_size=300, seed=i))
              for i, name in enumerate(("tuned", "base", "judge"))}
    # The models under evaluation must answer something: evaluation fails a language with no answer at all.
    for name in ("tuned", "base"):
        teach_reply(models[name], REPLY)
    # and one that only ever writes blank lines: a degenerate model under evaluation.
    models["silent"] = teach_reply(build_tiny_model(root / "silent", TEXTS, hidden_size=16, num_layers=1,
                                                    num_heads=2, vocab_size=300, seed=3), "\n\n")
    return config, models


def _resources(models: dict[str, str], judge: str) -> dict:
    return {
        "inference": InferenceSettings(batch_size=8, num_threads=1),
        "answer_model": AnswerModelRole(model=models["tuned"], baseline=models["base"]),
        "judge": ModelRole(model=judge),
    }


def _failure_message(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failures[0].step_failure_data.error.message if failures else ""


def test_evaluation_refuses_a_judge_that_is_the_model_under_evaluation(setup):
    config, models = setup
    result = materialize(config, ["evaluation"], None, _resources(models, models["tuned"]), run_config=SHORT,
                         raise_on_error=False)
    assert not result.success
    message = _failure_message(result)
    assert "evaluation refused" in message and "does not judge its own answers" in message
    assert "allow_self_judge" in message
    with duckdb.connect(str(config.warehouse), read_only=True) as con:  # nothing was evaluated
        assert con.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_name = 'evaluation_results'").fetchone()[0] == 0


def test_an_explicit_override_lets_the_model_judge_itself_and_is_on_record(setup):
    config, models = setup
    run_config = {"ops": {"evaluation": {"config": {"max_new_tokens": 6, "benchmarks": [], "allow_self_judge": True}}}}
    result = materialize(config, ["evaluation"], None, _resources(models, models["tuned"]), run_config=run_config)
    assert result.success
    metadata = result.asset_materializations_for_node("evaluation")[0].metadata
    assert metadata["self_judge_override"].value is True
    assert models["tuned"] in metadata["judge"].value and models["tuned"] in metadata["answer_model"].value


def test_another_judge_evaluates_the_tuned_model_against_its_baseline_and_both_take_the_benchmarks(setup):
    config, models = setup
    full = {"ops": {"evaluation": {"config": {"max_new_tokens": 6}}}}  # default benchmarks, sample files
    result = materialize(config, ["evaluation"], None, _resources(models, models["judge"]), run_config=full)
    assert result.success
    metadata = result.asset_materializations_for_node("evaluation")[0].metadata
    assert metadata["self_judge_override"].value is False
    assert Path(models["judge"]).name in metadata["judge"].value and "chat" in metadata["judge"].value
    assert "raw prompt" in metadata["answer_model"].value  # the tuned model gets the prompt it was trained on
    with duckdb.connect(str(config.warehouse), read_only=True) as con:
        rows = con.execute("SELECT lang, model, questions FROM evaluation_results ORDER BY model").fetchall()
        scored = con.execute("SELECT benchmark, lang, model, examples, accuracy, predicted FROM evaluation_benchmarks "
                             "ORDER BY model").fetchall()
    assert rows == [("vi", "base", 6), ("vi", "tuned", 6)]
    # The sample has XNLI for vi (not XCOPA or XStoryCloze): both models scored on its 6 examples.
    assert [(b, lang, m, n) for b, lang, m, n, _, _ in scored] == [("xnli", "vi", "base", 6), ("xnli", "vi", "tuned", 6)]
    assert all(0 <= acc <= 1 and sum(json.loads(predicted).values()) == 6 for *_, acc, predicted in scored)
    table = metadata["benchmarks"].value
    assert "| xnli | vi | 6 |" in table and "tuned accuracy" in table and "base predictions" in table


def test_the_judge_can_be_a_chat_model_behind_an_openai_compatible_server(setup):
    config, models = setup
    served = TransformersBackend(ModelSpec(models["judge"], device="cpu"), num_threads=1)
    with OpenAICompatibleServer(served) as server:
        judge = ModelRole(model="tiny-judge", backend="openai", base_url=server.base_url, max_retries=0)
        resources = {**_resources(models, models["judge"]), "judge": judge}
        result = materialize(config, ["evaluation"], None, resources, run_config=SHORT)
    assert result.success
    metadata = result.asset_materializations_for_node("evaluation")[0].metadata
    assert metadata["judge"].value.startswith(f"tiny-judge (openai {server.base_url}, chat;")
    judged = [body for body in server.requests if "[Answer 1]" in body["messages"][0]["content"]]
    # Every question judged (both orders; an order whose prompt is the other's, equal answers, is asked once).
    assert 6 <= len(judged) <= 12 and all(body["model"] == "tiny-judge" for body in judged)
    assert len({body["messages"][0]["content"] for body in judged}) == len(judged)


def test_a_model_under_evaluation_that_answers_nothing_fails_the_check_with_the_reason(setup):
    config, models = setup
    resources = _resources(models, models["judge"])
    resources["answer_model"] = AnswerModelRole(model=models["silent"], baseline=models["base"])
    result = materialize(config, ["evaluation"], None, resources, run_config=SHORT, raise_on_error=False)
    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "output_not_empty"]
    assert not check.passed
    assert check.description == f"vi: 0 of 6 questions got a non-empty answer from {models['silent']}"
