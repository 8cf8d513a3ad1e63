"""Which model plays each role: defaults, checkpoint references, backends per role, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xinst_assets.store.checkpoints import record_checkpoint
from xinst_assets.assets.model_roles import (
    RoleError,
    resolve_answer_models,
    resolve_curator,
    resolve_following,
    resolve_judge,
    resolve_reference,
    self_judge_problem,
)
from xinst_assets.core.tiny_model import build_tiny_model
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, ModelRole
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.warehouse import Warehouse

TEXTS = ["Write a short note about the market.", "Pasar pagi di desa kami selalu ramai.", "1 2 3"] * 5
SERVER = {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "api_key_env": None}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("role-models")
    for name in ("instruct", "generator", "tuned", "base"):
        build_tiny_model(root / name, TEXTS, hidden_size=16, num_layers=1, num_heads=2, vocab_size=300)
    # A model without a chat template (a raw base model).
    build_tiny_model(root / "plain", TEXTS, hidden_size=16, num_layers=1, num_heads=2, vocab_size=300)
    config = root / "plain" / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template")
    config.write_text(json.dumps(data))
    (root / "plain" / "chat_template.jinja").unlink()
    return root


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(path=str(tmp_path / "warehouse.duckdb"))


def curator_of(models: ModelSettings, warehouse: Warehouse, models_dir: Path, curator: ModelRole | None = None,
               inference: InferenceSettings | None = None, log=None):
    return resolve_curator(curator or ModelRole(), models, inference or InferenceSettings(), warehouse, models_dir,
                           log)


def test_the_curator_is_the_configured_instruct_model_and_chats_through_its_template(models_dir, warehouse):
    record_checkpoint(warehouse, "curator", str(models_dir / "tuned"), None)  # an instruct model comes first
    curator = curator_of(ModelSettings(instruct_model=str(models_dir / "instruct")), warehouse, models_dir)
    assert (curator.model, curator.source, curator.chat) == (str(models_dir / "instruct"), "models.instruct_model",
                                                             True)
    assert curator.open().fingerprint().endswith(":chat")


def test_without_an_instruct_model_the_curator_is_the_recorded_curator_checkpoint(models_dir, warehouse):
    record_checkpoint(warehouse, "curator", str(models_dir / "tuned"), "abc")
    curator = curator_of(ModelSettings(base_model=str(models_dir / "base")), warehouse, models_dir)
    assert (curator.model, curator.source) == (str(models_dir / "tuned"), "checkpoint:curator")


def test_with_nothing_else_the_curator_is_the_base_model_and_says_so(models_dir, warehouse):
    said: list[str] = []
    curator = curator_of(ModelSettings(base_model=str(models_dir / "plain")), warehouse, models_dir, log=said.append)
    assert (curator.model, curator.source) == (str(models_dir / "plain"), "models.base_model")
    assert curator.chat is False  # no chat template: the raw prompt
    assert "grading with the base model" in said[0]


def test_the_curator_is_never_the_trained_generator(models_dir, warehouse):
    generator = str(models_dir / "generator")
    record_checkpoint(warehouse, "instruction_generator", generator, "fp")
    with pytest.raises(RoleError, match="would be the trained instruction generator"):
        curator_of(ModelSettings(), warehouse, models_dir, ModelRole(model="checkpoint:instruction_generator"))
    with pytest.raises(RoleError, match="instruction generator"):
        curator_of(ModelSettings(base_model=generator), warehouse, models_dir)
    # In zero-shot mode the generator is an instruct model, which may grade too.
    zero_shot = curator_of(ModelSettings(generator_mode="zero_shot", instruct_model=generator), warehouse, models_dir)
    assert zero_shot.model == generator


def test_a_checkpoint_reference_names_the_asset_that_has_not_run_yet(warehouse):
    with pytest.raises(RoleError, match="materialize the curator asset first"):
        resolve_reference("checkpoint:curator", warehouse)
    assert resolve_reference("owner/model", warehouse) == "owner/model"


def test_the_refiner_is_the_curator_unless_it_names_its_own_model_or_backend(models_dir, warehouse):
    inference = InferenceSettings(batch_size=3)
    curator = curator_of(ModelSettings(instruct_model=str(models_dir / "instruct")), warehouse, models_dir,
                         inference=inference)
    same = resolve_following("refiner", ModelRole(), curator, warehouse)
    assert same.serves_like(curator) and same.settings is inference and "the curator" in same.source
    served = resolve_following("refiner", ModelRole(**SERVER, served_model="writer"), curator, warehouse)
    assert served.settings.backend == "openai" and served.chat is True and not served.serves_like(curator)
    assert served.model == curator.model and served.served_name == "writer"
    raw = resolve_following("refiner", ModelRole(model=str(models_dir / "plain")), curator, warehouse)
    assert raw.chat is False and raw.settings is inference  # its own model decides by its own template
    forced = resolve_following("refiner", ModelRole(chat=False), curator, warehouse)
    assert forced.chat is False and forced.model == curator.model


def test_the_answer_model_is_the_tuned_checkpoint_against_the_base_model_with_the_raw_prompt(models_dir, warehouse):
    record_checkpoint(warehouse, "tuned_checkpoint", str(models_dir / "tuned"), "fp")
    record_checkpoint(warehouse, "base_model", str(models_dir / "base"), None)
    tuned, base = resolve_answer_models(AnswerModelRole(), InferenceSettings(), warehouse)
    assert (tuned.model, base.model) == (str(models_dir / "tuned"), str(models_dir / "base"))
    assert tuned.chat is False and base.chat is False  # trained on the raw response prompt
    other, _ = resolve_answer_models(AnswerModelRole(model=str(models_dir / "instruct"), chat=True),
                                     InferenceSettings(), warehouse)
    assert other.chat is True and other.model == str(models_dir / "instruct")


def test_a_judge_that_is_the_model_under_evaluation_is_refused_with_the_fix(models_dir, warehouse):
    record_checkpoint(warehouse, "tuned_checkpoint", str(models_dir / "tuned"), "fp")
    record_checkpoint(warehouse, "base_model", str(models_dir / "base"), None)
    tuned, base = resolve_answer_models(AnswerModelRole(), InferenceSettings(), warehouse)
    curator = curator_of(ModelSettings(instruct_model=str(models_dir / "instruct")), warehouse, models_dir)
    assert self_judge_problem(resolve_following("judge", ModelRole(), curator, warehouse), tuned) is None
    # The same folder, however it is written, is the same model.
    spellings = ("checkpoint:tuned_checkpoint", str(models_dir / "tuned") + "/", str(models_dir / "x" / ".." / "tuned"))
    for written in spellings:
        judge = resolve_following("judge", ModelRole(model=written), curator, warehouse)
        problem = self_judge_problem(judge, tuned)
        assert problem and "does not judge its own answers" in problem and "allow_self_judge" in problem
    # The baseline may judge (it is not under evaluation).
    assert self_judge_problem(resolve_following("judge", ModelRole(model="checkpoint:base_model"), curator,
                                                warehouse), tuned) is None


def test_served_models_are_the_same_only_on_the_same_server_under_the_same_name(models_dir, warehouse):
    curator = curator_of(ModelSettings(instruct_model=str(models_dir / "instruct")), warehouse, models_dir)
    evaluated, _ = resolve_answer_models(
        AnswerModelRole(model="my-tuned", baseline="my-base", **SERVER), InferenceSettings(), warehouse)
    same = resolve_following("judge", ModelRole(model="my-tuned", **SERVER), curator, warehouse)
    other_server = {**SERVER, "base_url": "http://127.0.0.1:9/v1"}
    elsewhere = resolve_following("judge", ModelRole(model="my-tuned", **other_server), curator, warehouse)
    other = resolve_following("judge", ModelRole(model="big-judge", **SERVER), curator, warehouse)
    assert self_judge_problem(same, evaluated) is not None
    assert self_judge_problem(elsewhere, evaluated) is None and self_judge_problem(other, evaluated) is None


def test_a_judge_with_its_own_model_never_builds_or_loads_the_curator(models_dir, warehouse, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    judge = resolve_judge(ModelRole(model=str(models_dir / "instruct")), ModelRole(), ModelSettings(),
                          InferenceSettings(batch_size=5), warehouse, empty)
    assert judge.model == str(models_dir / "instruct") and judge.settings.batch_size == 5 and judge.chat is True
    assert list(empty.iterdir()) == []  # the demo base model (the curator's last default) was not built
    by_default = resolve_judge(ModelRole(), ModelRole(), ModelSettings(instruct_model=str(models_dir / "instruct")),
                               InferenceSettings(), warehouse, empty)
    assert by_default.model == str(models_dir / "instruct") and "the curator" in by_default.source
