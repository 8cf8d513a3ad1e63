"""Which model plays each role, and which backend serves it (DESIGN.md: roles are separate models).

* **generator** — the backward model (response -> instruction), trained on the seeds by the
  ``instruction_generator`` asset (or an instruct model in zero-shot mode); served by the ``inference`` resource.
* **curator** — grades candidate pairs 1/2/3 by constrained choice. An instruction-following model, never the
  trained generator. Default, the first that exists: ``models.instruct_model``; the checkpoint an asset recorded
  as ``curator`` (the base model tuned to grade); the base model (``models.base_model``, or the demo's tiny base).
* **refiner** — rewrites level-2 responses. Default: the curator.
* **answer model** — the model under evaluation. Default: ``checkpoint:tuned_checkpoint``; its baseline defaults
  to ``checkpoint:base_model`` (the base the tuned checkpoint was trained from).
* **judge** — scores two answers in evaluation. Default: the curator. Never the model under evaluation:
  :func:`self_judge_problem` says why a configuration is refused (``allow_self_judge`` overrides, on record).

A role that defaults to another role (refiner, judge -> curator) takes from it each of model, backend settings
and chat mode that it does not set itself. A model may be written ``checkpoint:<name>``: the path the asset
that makes ``<name>`` recorded in the warehouse.

Stages use it like this::

    curator = resolve_curator(curator_role, models, inference, warehouse, storage.paths.models, log)
    backend = curator.open()           # a LazyBackend: loads on first use, chat template when curator.chat
    metadata["curator"] = curator.describe()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xinst_assets.store.checkpoints import current_checkpoint
from xinst_assets.inference.base import ModelSpec, looks_like_path
from xinst_assets.inference.chat import has_chat_template
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, LazyBackend, ModelRole
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.warehouse import Warehouse

CHECKPOINT_PREFIX = "checkpoint:"
# Roles that follow instructions (they chat by default when the model has a chat template); the generator and
# the answer model get the raw prompt format they were trained on.
INSTRUCTION_ROLES = ("curator", "refiner", "judge")


class RoleError(ValueError):
    """A role cannot be resolved to a model (the message says which setting to change)."""


@dataclass(frozen=True)
class ResolvedRole:
    """A role's model, the backend settings that serve it, whether prompts go as chat, and why this model."""

    role: str
    model: str
    settings: InferenceSettings
    chat: bool
    source: str  # the setting or default that chose the model

    def open(self) -> LazyBackend:
        """The role's backend; the model loads on the first call that is not cached."""
        return LazyBackend(self.settings, self.model, chat=self.chat)

    def serves_like(self, other: ResolvedRole) -> bool:
        """Same model, backend settings and prompt format: one loaded backend can serve both roles."""
        return (self.model, self.chat, self.settings.backend_fields()) == (
            other.model, other.chat, other.settings.backend_fields())

    @property
    def served_name(self) -> str:
        return (self.settings.served_model or self.model) if self.settings.backend == "openai" else self.model

    def describe(self) -> str:
        """One line for metadata and logs: model, backend, prompt format and where the choice came from."""
        where = self.settings.backend
        if where == "openai":
            where = f"openai {self.settings.base_url}"
        return f"{self.served_name} ({where}, {'chat' if self.chat else 'raw prompt'}; {self.source})"

    def identity(self) -> str:
        """What names the weights: a resolved folder, a hub id, or a served name (with its server)."""
        name = self.served_name
        key = str(Path(name).expanduser().resolve()) if looks_like_path(name) else name
        if self.settings.backend == "openai" and not looks_like_path(name):
            return f"{(self.settings.base_url or '').rstrip('/')}#{key}"
        return key


def resolve_reference(model: str, warehouse: Warehouse) -> str:
    """``checkpoint:<name>`` -> the recorded path; any other model name as it is."""
    if not model.startswith(CHECKPOINT_PREFIX):
        return model
    name = model[len(CHECKPOINT_PREFIX):].strip()
    try:
        return current_checkpoint(warehouse, name)
    except FileNotFoundError as exc:
        raise RoleError(str(exc)) from exc


def recorded_checkpoint(warehouse: Warehouse, name: str) -> str | None:
    """The path recorded for ``name``, or None when the asset that makes it has not run."""
    try:
        return current_checkpoint(warehouse, name)
    except FileNotFoundError:
        return None


def _chat(role: str, explicit: bool | None, inherited: bool | None, model: str, settings: InferenceSettings) -> bool:
    """The role's chat mode: its own setting, else the one it inherits, else by role and model."""
    for value in (explicit, inherited):
        if value is not None:
            return value
    if role not in INSTRUCTION_ROLES:
        return False
    if settings.backend == "openai":
        return True  # a served instruction model is asked through its chat endpoint
    spec = ModelSpec(model=model, trust_remote_code=settings.trust_remote_code, allow_download=settings.allow_download)
    return has_chat_template(spec)


def resolve_curator(
    curator: ModelRole, models: ModelSettings, inference: InferenceSettings, warehouse: Warehouse,
    models_dir: Path, log: Callable[[str], None] | None = None,
) -> ResolvedRole:
    """The model that grades pairs (see the module docstring for the order of defaults)."""
    settings = curator.settings(inference)
    if curator.model:
        model, source = resolve_reference(curator.model, warehouse), f"curator.model={curator.model}"
    elif models.instruct_model:
        model, source = models.instruct_model, "models.instruct_model"
    elif (tuned := recorded_checkpoint(warehouse, "curator")) is not None:
        model, source = tuned, "checkpoint:curator"
    else:
        model = models.resolve_base_model(models_dir, log)
        source = "models.base_model" if models.base_model else "the demo base model"
        if log is not None:
            log(f"curator: no instruct model configured and no curator checkpoint recorded; grading with the base "
                f"model {model} (set models.instruct_model or curator.model to an instruction-following model)")
    generator = recorded_checkpoint(warehouse, "instruction_generator")
    if models.generator_mode == "trained" and generator is not None and _same_path(model, generator):
        raise RoleError(
            f"the curator would be the trained instruction generator ({generator}), which only learned to write "
            "instructions for texts, not to grade or rewrite: point curator.model or models.instruct_model at an "
            "instruction-following model"
        )
    chat = _chat("curator", curator.chat, inference.chat if curator.backend is None else None, model, settings)
    return ResolvedRole("curator", model, settings, chat, source)


def resolve_following(role_name: str, role: ModelRole, parent: ResolvedRole, warehouse: Warehouse) -> ResolvedRole:
    """A role that defaults to ``parent`` (refiner and judge -> the curator), setting by setting."""
    settings = role.settings(parent.settings)
    if role.model:
        model, source = resolve_reference(role.model, warehouse), f"{role_name}.model={role.model}"
    else:
        model, source = parent.model, f"the {parent.role} ({parent.source})"
    # Chat follows the parent only when the model is the parent's; another model decides by its own template.
    inherited = parent.chat if (not role.model and role.backend is None) else None
    chat = _chat(role_name, role.chat, inherited, model, settings)
    return ResolvedRole(role_name, model, settings, chat, source)


def resolve_judge(
    judge: ModelRole, curator: ModelRole, models: ModelSettings, inference: InferenceSettings,
    warehouse: Warehouse, models_dir: Path, log: Callable[[str], None] | None = None,
) -> ResolvedRole:
    """The evaluation judge: :func:`resolve_following` the curator, resolving the curator's model only when the
    judge does not name its own (so a judge with its own model never builds or loads the curator)."""
    if judge.model:
        settings = curator.settings(inference)
        stand_in = ResolvedRole("curator", judge.model, settings, False, "")  # only its settings are used
        return resolve_following("judge", judge, stand_in, warehouse)
    grading = resolve_curator(curator, models, inference, warehouse, models_dir, log)
    return resolve_following("judge", judge, grading, warehouse)


def resolve_answer_models(
    answer: AnswerModelRole, inference: InferenceSettings, warehouse: Warehouse
) -> tuple[ResolvedRole, ResolvedRole]:
    """The model under evaluation and its baseline (same backend settings and prompt format)."""
    settings = answer.settings(inference)
    inherited = inference.chat if answer.backend is None else None
    tuned_ref = answer.model or f"{CHECKPOINT_PREFIX}tuned_checkpoint"
    base_ref = answer.baseline or f"{CHECKPOINT_PREFIX}base_model"
    tuned = resolve_reference(tuned_ref, warehouse)
    base = resolve_reference(base_ref, warehouse)
    chat = _chat("answer_model", answer.chat, inherited, tuned, settings)
    return (ResolvedRole("answer_model", tuned, settings, chat, f"answer_model.model={tuned_ref}"),
            ResolvedRole("baseline", base, settings, chat, f"answer_model.baseline={base_ref}"))


def self_judge_problem(judge: ResolvedRole, evaluated: ResolvedRole) -> str | None:
    """Why ``judge`` may not judge ``evaluated``'s answers (it is the same model), or None."""
    if judge.identity() != evaluated.identity():
        return None
    return (
        f"the judge ({judge.describe()}) is the model under evaluation ({evaluated.describe()}): a model does not "
        "judge its own answers. Point the judge resource (judge.model) at another model, or set allow_self_judge: "
        "true in the evaluation's run config (recorded in its metadata)"
    )


def _same_path(a: str, b: str) -> bool:
    if looks_like_path(a) and looks_like_path(b):
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return a == b
