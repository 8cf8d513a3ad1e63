"""Kubernetes settings for running xinst beyond one machine, read from the files in ``deploy/``.

Nothing here talks to a cluster. The functions turn the GPU pod template
(``deploy/k8s/gpu-pod-template.yaml``) into what dagster-k8s expects: the ``dagster-k8s/config`` tag of a GPU
step, and the pod spec of a training pod launched through Dagster Pipes (``PipesK8sClient``).
``executor_from_env`` picks the executor a deployment asks for. Each is read when the definitions are built,
never at import.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from xinst_assets.settings import PROJECT_ROOT

GPU_POD_TEMPLATE_ENV = "XINST_K8S_GPU_POD_TEMPLATE"
EXECUTOR_ENV = "XINST_EXECUTOR"
DEFAULT_GPU_POD_TEMPLATE = PROJECT_ROOT / "deploy" / "k8s" / "gpu-pod-template.yaml"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's resource name
K8S_CONFIG_TAG = "dagster-k8s/config"
EXECUTORS = ("multiprocess", "in_process", "k8s")


def load_gpu_pod_template(path: str | Path | None = None) -> dict[str, Any]:
    """The ``template`` ({metadata, spec}) of a Kubernetes ``PodTemplate`` file whose first container asks for
    GPUs. ``path`` defaults to ``$XINST_K8S_GPU_POD_TEMPLATE``, else the template shipped in ``deploy/``."""
    chosen = Path(path or os.environ.get(GPU_POD_TEMPLATE_ENV) or DEFAULT_GPU_POD_TEMPLATE).expanduser()
    try:
        document = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"GPU pod template not found: {chosen} (set {GPU_POD_TEMPLATE_ENV})") from exc
    if not isinstance(document, Mapping) or document.get("kind") != "PodTemplate":
        raise ValueError(f"{chosen}: expected a Kubernetes object of kind PodTemplate")
    template = document.get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise ValueError(f"{chosen}: template.spec.containers is empty")
    if gpu_count(template) < 1:
        raise ValueError(f"{chosen}: the first container must set resources.limits['{GPU_RESOURCE}'] >= 1")
    return dict(template)


def gpu_count(template: Mapping[str, Any]) -> int:
    """GPUs the template's first container asks for (its ``limits``; 0 when it asks for none)."""
    container = template["spec"]["containers"][0]
    return int(((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE, 0))


def gpu_step_k8s_config(template: Mapping[str, Any], gpus: int | None = None) -> dict[str, Any]:
    """The value of a GPU step's ``dagster-k8s/config`` tag (or of ``per_step_k8s_config[op]`` in the
    k8s_job_executor's config): the template's container settings, pod settings and labels, with ``gpus``
    GPUs when given (``InferenceSettings.tensor_parallel_size`` for a vLLM step, ``nproc_per_node`` for
    training).

    dagster-k8s keeps the container's name, image and command (the step's own); only resources, env and
    mounts come from the template.
    """
    spec = _with_gpus(template["spec"], gpus)
    container = spec.pop("containers")[0]
    container_config = {k: v for k, v in container.items() if k not in ("name", "image", "command", "args")}
    return {
        "container_config": container_config,
        "pod_spec_config": spec,
        "pod_template_spec_metadata": copy.deepcopy(dict(template.get("metadata") or {})),
    }


def gpu_op_tags(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"dagster-k8s/config": ...}`` for the assets of the ``gpu`` pool when ``$XINST_K8S_GPU_POD_TEMPLATE``
    names a template; ``{}`` otherwise (local runs are unaffected)."""
    env = os.environ if environ is None else environ
    path = env.get(GPU_POD_TEMPLATE_ENV)
    if not path:
        return {}
    return {K8S_CONFIG_TAG: gpu_step_k8s_config(load_gpu_pod_template(path))}


def training_pod_spec(template: Mapping[str, Any], gpus: int | None = None) -> dict[str, Any]:
    """A ``base_pod_spec`` for ``PipesK8sClient.run``: the template's pod with ``gpus`` GPUs on its first
    container (``TrainingLauncher.nproc_per_node`` for ``accelerate launch``/``torchrun``), restartPolicy
    Never."""
    spec = _with_gpus(template["spec"], gpus)
    # A failed training pod is retried by Dagster, and the retry resumes from the last checkpoint.
    spec["restartPolicy"] = "Never"
    return spec


def _with_gpus(pod_spec: Mapping[str, Any], gpus: int | None) -> dict[str, Any]:
    """A copy of ``pod_spec`` whose first container asks for ``gpus`` GPUs (unchanged when None)."""
    spec = copy.deepcopy(dict(pod_spec))
    if gpus is None:
        return spec
    if gpus < 1:
        raise ValueError(f"a GPU pod needs at least one GPU, got {gpus}")
    resources = spec["containers"][0].setdefault("resources", {})
    resources.setdefault("limits", {})[GPU_RESOURCE] = gpus
    if GPU_RESOURCE in (resources.get("requests") or {}):  # Kubernetes wants requests == limits for GPUs
        resources["requests"][GPU_RESOURCE] = gpus
    return spec


def executor_from_env(environ: Mapping[str, str] | None = None):
    """The executor named by ``$XINST_EXECUTOR``: unset or ``multiprocess`` -> None (Dagster's default),
    ``in_process``, or ``k8s`` (dagster-k8s's ``k8s_job_executor``: each step in its own pod)."""
    env = os.environ if environ is None else environ
    name = (env.get(EXECUTOR_ENV) or "multiprocess").strip()
    if name == "multiprocess":
        return None
    if name == "in_process":
        from dagster import in_process_executor

        return in_process_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ImportError(f"{EXECUTOR_ENV}=k8s needs the dagster-k8s package in this image") from exc
        return k8s_job_executor
    raise ValueError(f"unknown {EXECUTOR_ENV} {name!r}: use one of {', '.join(EXECUTORS)}")
