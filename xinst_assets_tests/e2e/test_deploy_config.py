"""The Kubernetes configuration in deploy/ is valid for the Dagster and dagster-k8s versions installed here.

No cluster is reached: each file is checked against the schema that would read it (Dagster's instance schema,
dagster-k8s's run launcher and executor schemas, the Kubernetes API models), and the pod a GPU step or a
training run would get is built offline exactly as dagster-k8s builds it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config, get_concurrency_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from dagster_k8s.pipes import build_pod_body

from xinst_assets import deploy
from xinst_assets.assets.model_roles import resolve_answer_models, resolve_curator, resolve_following
from xinst_assets.config import XinstConfig
from xinst_assets.definitions import build_definitions
from xinst_assets.resources.inference import AnswerModelRole, InferenceSettings, ModelRole
from xinst_assets.resources.models import ModelSettings
from xinst_assets.resources.warehouse import Warehouse
from xinst_assets.settings import PROJECT_ROOT
from xinst_assets.store import Store
from xinst_assets_tests import processes
from xinst_assets_tests.e2e.conftest import e2e_environment, venv_tool

DEPLOY = PROJECT_ROOT / "deploy"
IMAGE = "registry.example.com/xinst:0.1.0"
GPU_ASSETS = {"instruction_generator", "curator", "candidate_pairs", "scored_pairs", "tuned_checkpoint", "evaluation"}


def load_yaml(relative: str) -> dict:
    return yaml.safe_load((DEPLOY / relative).read_text(encoding="utf-8"))


def camel_to_snake(value):
    """Helm values are camelCase; Dagster's instance config is snake_case."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): camel_to_snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_to_snake(v) for v in value]
    return value


def as_model(model_class, manifest: dict):
    """A Kubernetes API object from a camelCase manifest; raises on any key the API does not have."""
    return k8s_model_from_dict(model_class, k8s_snake_case_dict(model_class, manifest))


@pytest.fixture(scope="module")
def instance_config() -> dict:
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    return dict(config)


@pytest.fixture(scope="module")
def helm_values() -> dict:
    return load_yaml("helm/values.yaml")


@pytest.fixture(scope="module")
def gpu_template() -> dict:
    return deploy.load_gpu_pod_template(DEPLOY / "k8s" / "gpu-pod-template.yaml")


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return build_definitions(XinstConfig.from_env({"XINST_HOME": "/data/xinst"}))


def test_every_yaml_and_json_file_in_deploy_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "dagster.yaml", "helm/values.yaml", "k8s/gpu-pod-template.yaml", "k8s/pvc.yaml",
        "run_config/k8s_gpu_steps.yaml", "run_config/multi_gpu.yaml",
    }
    for path in files:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        assert isinstance(document, dict) and document, path


def test_the_instance_yaml_passes_dagsters_instance_schema_with_a_k8s_run_launcher(instance_config):
    launcher = instance_config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = validate_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert "postgres" in instance_config["storage"]


def test_the_gpu_pool_limit_and_run_limits_are_set_and_the_same_in_helm_values(instance_config, helm_values):
    concurrency = instance_config["concurrency"]
    assert concurrency["pools"]["default_limit"] == helm_values["concurrency"]["pools"]["defaultLimit"] >= 1
    helm_concurrency = camel_to_snake({k: v for k, v in helm_values["concurrency"].items() if k != "enabled"})
    # The tag-limit values are data, not config keys: compare them as written.
    helm_runs = helm_values["concurrency"]["runs"]
    helm_concurrency["runs"]["tag_concurrency_limits"] = helm_runs["tagConcurrencyLimits"]
    assert validate_config(get_concurrency_config().config_type, helm_concurrency).success
    assert helm_concurrency["runs"] == concurrency["runs"]
    limits = {t["key"]: t for t in concurrency["runs"]["tag_concurrency_limits"]}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1,
    }


def test_the_gpu_pool_holds_exactly_the_model_stages(definitions):
    graph = definitions.resolve_asset_graph()
    gpu = {key.to_user_string() for key in graph.get_all_asset_keys() if "gpu" in graph.get(key).pools}
    assert gpu == GPU_ASSETS


def test_helm_values_launch_the_xinst_module_with_its_data_home_on_the_shared_volume(helm_values):
    (code,) = helm_values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "xinst_assets.definitions"]
    env = {e["name"]: e["value"] for e in code["env"]}
    claim = load_yaml("k8s/pvc.yaml")["metadata"]["name"]
    launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    for holder in (code, launcher):
        volumes, mounts = holder["volumes"], holder["volumeMounts"]
        assert volumes == [{"name": "xinst-home", "persistentVolumeClaim": {"claimName": claim}}]
        assert mounts == [{"name": "xinst-home", "mountPath": env["XINST_HOME"]}]
    assert "XINST_HOME=" + env["XINST_HOME"] in launcher["envVars"]
    assert code["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert helm_values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_the_gpu_pod_template_is_a_valid_kubernetes_pod_template_asking_for_one_gpu(gpu_template):
    document = load_yaml("k8s/gpu-pod-template.yaml")
    assert document["kind"] == "PodTemplate"
    as_model(kubernetes.client.V1PodTemplateSpec, document["template"])
    assert deploy.gpu_count(gpu_template) == 1
    pvc = load_yaml("k8s/pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    as_model(kubernetes.client.V1PersistentVolumeClaimSpec, pvc["spec"])


def test_a_gpu_step_pod_built_as_dagster_k8s_builds_it_gets_the_gpu_node_and_the_shared_volume(
    instance_config, gpu_template
):
    launcher = instance_config["run_launcher"]["config"]
    run_context = K8sContainerContext(
        env_vars=launcher["env_vars"], env_secrets=launcher["env_secrets"], volumes=launcher["volumes"],
        volume_mounts=launcher["volume_mounts"], resources=launcher["resources"],
        service_account_name=launcher["service_account_name"], namespace=launcher["job_namespace"],
    )
    step_config = UserDefinedDagsterK8sConfig.from_dict(deploy.gpu_step_k8s_config(gpu_template))
    context = run_context.merge(K8sContainerContext(run_k8s_config=step_config))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image=IMAGE, dagster_home=launcher["dagster_home"],
                            instance_config_map=launcher["instance_config_map"],
                            postgres_password_secret=launcher["postgres_password_secret"]),
        ["dagster", "api", "execute_step"], "dagster-step-test",
        user_defined_k8s_config=context.run_k8s_config, pod_name="dagster-step-test",
        component="step_worker", labels={"dagster/op": "scored_pairs"},
    )
    pod = kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert sorted(v["name"] for v in pod["spec"]["volumes"]) == ["dshm", "xinst-home"]  # no duplicate volume
    assert {"XINST_HOME", "DAGSTER_HOME"} <= {e["name"] for e in container["env"]}
    assert pod["metadata"]["labels"]["xinst/compute"] == "gpu"


@pytest.fixture(scope="module")
def k8s_job(definitions) -> dg.JobDefinition:
    """The pipeline's assets in a job that runs each step in its own pod (what XINST_EXECUTOR=k8s selects)."""
    job = dg.define_asset_job("k8s_check", selection=dg.AssetSelection.all(), executor_def=k8s_job_executor)
    return dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def("k8s_check")


def test_the_one_gpu_step_run_config_gives_every_gpu_asset_the_template_and_passes_the_executor_schema(
    k8s_job, gpu_template
):
    run_config = load_yaml("run_config/k8s_gpu_steps.yaml")
    per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) == GPU_ASSETS
    assert all(cfg == deploy.gpu_step_k8s_config(gpu_template) for cfg in per_step.values())
    dg.validate_run_config(k8s_job, run_config)  # raises DagsterInvalidConfigError naming a bad key


def test_the_multi_gpu_run_config_gives_each_step_as_many_gpus_as_accelerate_or_vllm_use(
    definitions, k8s_job, gpu_template
):
    run_config = load_yaml("run_config/multi_gpu.yaml")
    dg.validate_run_config(k8s_job, run_config)
    for name in ("xinst_pipeline", "xinst_tuning"):  # the resources alone suit the default executor too
        job = definitions.resolve_job_def(name)
        resolved = dg.validate_run_config(job, {"resources": run_config["resources"]})
        launcher = resolved["resources"]["training_launcher"]["config"]
        inference = resolved["resources"]["inference"]["config"]
    assert launcher["launcher"] == "accelerate"
    assert (PROJECT_ROOT / "xinst_assets" / "training" / "launch" / launcher["accelerate_config"]).is_file()
    assert inference["backend"] == "vllm"
    per_step = run_config["execution"]["config"]["per_step_k8s_config"]
    assert set(per_step) == GPU_ASSETS
    for op in ("instruction_generator", "tuned_checkpoint"):
        assert per_step[op] == deploy.gpu_step_k8s_config(gpu_template, gpus=launcher["nproc_per_node"])
    for op in ("candidate_pairs", "scored_pairs", "evaluation"):
        tensor_parallel = inference["tensor_parallel_size"]
        assert per_step[op] == deploy.gpu_step_k8s_config(gpu_template, gpus=tensor_parallel)


def test_the_model_roles_run_config_gives_each_role_the_backend_it_names(definitions, tmp_path: Path):
    run_config = load_yaml("run_config/model_roles.yaml")
    config = {}  # each job resolves the resources its assets use (the refiner: pipeline; the judge: tuning)
    for name in ("xinst_pipeline", "xinst_tuning"):
        resolved = dg.validate_run_config(definitions.resolve_job_def(name), run_config)
        config.update({key: value["config"] for key, value in resolved["resources"].items()})
    inference, models = InferenceSettings(**config["inference"]), ModelSettings(**config["models"])
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    curator = resolve_curator(ModelRole(**config["curator"]), models, inference, warehouse, tmp_path)
    refiner = resolve_following("refiner", ModelRole(**config["refiner"]), curator, warehouse)
    judge = resolve_following("judge", ModelRole(**config["judge"]), curator, warehouse)
    assert (curator.settings.backend, curator.chat, curator.served_name) == ("openai", True, "Qwen2.5-72B-Instruct")
    assert refiner.serves_like(curator)  # an empty role is the curator
    assert judge.settings.base_url == "https://api.openai.com/v1" and judge.settings.api_key_env == "OPENAI_API_KEY"
    answer = AnswerModelRole(**{**config["answer_model"], "model": "/models/tuned", "baseline": "/models/base"})
    tuned, _ = resolve_answer_models(answer, inference, warehouse)
    assert tuned.settings is inference and inference.backend == "vllm" and tuned.chat is False
    assert len({curator.identity(), judge.identity(), tuned.identity()}) == 3


def test_a_pipes_training_pod_asks_for_as_many_gpus_as_accelerate_launches(gpu_template):
    spec = deploy.training_pod_spec(gpu_template, gpus=8)
    command = ["accelerate", "launch", "--num_processes=8", "-m", "xinst_assets.training",
               "--config", "run.json"]
    pod = build_pod_body("xinst-train", IMAGE, command, {"DAGSTER_PIPES_CONTEXT": "x"}, None, spec)
    body = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    container = body["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert container["command"] == command and body["spec"]["restartPolicy"] == "Never"
    with pytest.raises(ValueError, match="at least one GPU"):
        deploy.training_pod_spec(gpu_template, gpus=0)
    assert deploy.gpu_count(gpu_template) == 1  # the template itself is not changed


def test_deploy_settings_come_from_the_environment_and_bad_ones_fail_clearly(gpu_template, tmp_path: Path):
    assert deploy.executor_from_env({}) is None
    assert deploy.executor_from_env({"XINST_EXECUTOR": "k8s"}) is k8s_job_executor
    assert deploy.executor_from_env({"XINST_EXECUTOR": "in_process"}) is dg.in_process_executor
    with pytest.raises(ValueError, match="unknown XINST_EXECUTOR 'celery'"):
        deploy.executor_from_env({"XINST_EXECUTOR": "celery"})
    assert deploy.gpu_op_tags({}) == {}
    tags = deploy.gpu_op_tags({"XINST_K8S_GPU_POD_TEMPLATE": str(DEPLOY / "k8s" / "gpu-pod-template.yaml")})
    assert tags == {"dagster-k8s/config": deploy.gpu_step_k8s_config(gpu_template)}
    cpu_only = tmp_path / "cpu.yaml"
    cpu_only.write_text(
        "kind: PodTemplate\ntemplate:\n  spec:\n    containers: [{name: x}]\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="nvidia.com/gpu"):
        deploy.load_gpu_pod_template(cpu_only)
    with pytest.raises(FileNotFoundError, match="XINST_K8S_GPU_POD_TEMPLATE"):
        deploy.load_gpu_pod_template(tmp_path / "missing.yaml")


def helm_code_location_env(helm_values: dict, home: Path) -> dict[str, str]:
    """The code location's environment from the Helm values, its folders moved under ``home`` (the cluster's
    paths do not exist here), narrowed to two languages."""
    (code,) = helm_values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in code["env"]}
    (home / "config").mkdir(parents=True)
    (home / "config" / "languages.yaml").write_text("languages: {}\nonly: [fi, sw]\n", encoding="utf-8")
    return {**env, "XINST_HOME": str(home), "XINST_LANGUAGES_FILE": str(home / "config" / "languages.yaml"),
            "XINST_RAW_SOURCES": str(home / "raw")}


def test_the_definitions_load_with_the_settings_of_the_helm_values(helm_values, tmp_path: Path):
    env = helm_code_location_env(helm_values, tmp_path / "xinst")
    defs = build_definitions(XinstConfig.from_env(env))
    assert defs.resolve_job_def("xinst_pipeline").partitions_def.get_partition_keys() == ["fi", "sw"]
    assert [s.name for s in defs.schedules] == ["nightly_refresh"]
    assert defs.resolve_sensor_def("new_raw_shards").name == "new_raw_shards"
    assert deploy.executor_from_env(env) is k8s_job_executor
    template = str(DEPLOY / "k8s" / "gpu-pod-template.yaml")
    assert set(deploy.gpu_op_tags({**env, "XINST_K8S_GPU_POD_TEMPLATE": template})) == {"dagster-k8s/config"}


@pytest.mark.slow
def test_dagster_definitions_validate_passes_for_the_module_with_the_settings_of_the_helm_values(
    helm_values, tmp_path: Path
):
    env = helm_code_location_env(helm_values, tmp_path / "xinst")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    process_env = e2e_environment(dagster_home, Path(env["XINST_HOME"]), Path(env["XINST_LANGUAGES_FILE"]),
                                  XINST_RAW_SOURCES=env["XINST_RAW_SOURCES"])
    result = processes.run([venv_tool("dagster"), "definitions", "validate", "-m", "xinst_assets.definitions"],
                           env=process_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr


def _without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


def test_the_lakehouse_overlay_keeps_every_base_setting_and_gives_every_pod_the_same_lake(helm_values):
    overlay = load_yaml("helm/values-lakehouse.yaml")
    # Helm replaces lists: the overlay's deployment and run launcher repeat the base's, and only add to the env.
    (base_code,) = helm_values["dagster-user-deployments"]["deployments"]
    (code,) = overlay["dagster-user-deployments"]["deployments"]
    assert _without(code, "env") == _without(base_code, "env")
    assert [e for e in code["env"] if e in base_code["env"]] == base_code["env"]
    base_launcher = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = overlay["runLauncher"]["config"]["k8sRunLauncher"]
    assert _without(launcher, "envVars") == _without(base_launcher, "envVars")
    assert set(base_launcher["envVars"]) <= set(launcher["envVars"])
    # The code server (and the runs it launches with its config) and the run pods choose the same lakehouse.
    code_env = {e["name"]: e["value"] for e in code["env"]}
    run_env = dict(item.split("=", 1) for item in launcher["envVars"])
    stores = [Store.from_env(Path(env["XINST_HOME"]), env) for env in (code_env, run_env)]
    assert stores[0].backend == stores[1].backend == "lakehouse"
    assert stores[0].data_path == stores[1].data_path and stores[0].data_path.startswith("s3://")
    assert stores[0].s3_region == stores[1].s3_region
    # The catalog's connection string comes from the secret both name, never from the values.
    assert code["envSecrets"] == [{"name": "xinst-secrets"}] and launcher["envSecrets"] == [{"name": "xinst-secrets"}]
    assert "XINST_LAKEHOUSE_CATALOG" not in code_env and "XINST_LAKEHOUSE_CATALOG" not in run_env
