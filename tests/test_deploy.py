"""deploy/: the Kubernetes manifests and the SLURM script, checked offline (no cluster here).

Every manifest is validated against Kubernetes' own schemas (``kubernetes-validate``, strict:
unknown fields are errors), and the pieces must fit: the worker command is the one the chaos
run tests (``bench.chaos.worker_argv``) and parses with fishopt's CLI, the environment holds
only settings fishopt or libpq reads, passwords come from the Secret, and every Secret key,
Service and volume claim used is defined.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from test_compose import _fishopt_command

from bench import chaos
from fishopt import config

REPO = Path(__file__).resolve().parent.parent
KUBE = REPO / "deploy" / "kubernetes"
SLURM = REPO / "deploy" / "slurm" / "fishopt-workers.sbatch"
K8S_VERSION = "1.30.0"  # the oldest release still in common use that has every field used


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    out = {}
    for name in [*kustomization["resources"], "secret.example.yaml"]:
        for doc in _docs(name):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in KUBE.glob("*.yaml")))
def test_every_manifest_is_valid_kubernetes(name: str) -> None:
    if name == "kustomization.yaml":
        listed = yaml.safe_load((KUBE / name).read_text())["resources"]
        assert sorted(listed) == sorted(
            p.name for p in KUBE.glob("*.yaml") if p.name not in (name, "secret.example.yaml")
        )
        return
    for doc in _docs(name):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _container(resource: dict) -> dict:
    (container,) = resource["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, dict | str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_workers_are_an_indexed_job_running_the_chaos_tested_command(resources: dict) -> None:
    job = resources[("Job", "fishopt-workers")]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] >= 2
    assert spec["template"]["spec"]["restartPolicy"] == "OnFailure"
    worker = _container(job)
    command = worker["command"]
    assert command[0] == "fishopt"
    assert command[1:] == chaos.worker_argv(command[2])  # the chaos run's command
    assert _fishopt_command(command[1:]).params["threads"] == 1
    env = _env(worker)
    assert set(env) == set(chaos.WORKER_ENV)  # the settings the chaos run sets, no others
    config.resolve_heartbeat(env={k: v for k, v in env.items() if isinstance(v, str)})
    url = env[config.ENV_STORAGE]
    assert isinstance(url, str) and url.startswith("postgresql+psycopg://")
    assert config.secrets(url, env={}) == ()  # no password in the URL ...
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "fishopt-secrets", "key": "pg-password"}}
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    assert (host, int(port)) == ("pgbouncer", 6432)  # ... through the pooler


def test_pgbouncer_pools_transactions_in_front_of_postgres(resources: dict) -> None:
    env = _env(_container(resources[("Deployment", "pgbouncer")]))
    assert env["POOL_MODE"] == "transaction"
    assert env["DB_HOST"] == "postgres" and ("Service", "postgres") in resources
    assert int(env["MAX_DB_CONNECTIONS"]) < 100  # PostgreSQL's default max_connections
    assert env["AUTH_TYPE"] == "scram-sha-256"
    service = resources[("Service", "pgbouncer")]
    assert service["spec"]["ports"][0]["port"] == int(env["LISTEN_PORT"]) == 6432


def test_dashboard_is_behind_its_login(resources: dict) -> None:
    dashboard = _container(resources[("Deployment", "fishopt-dashboard")])
    params = _fishopt_command(dashboard["command"][1:]).params
    assert params["host"] == "0.0.0.0" and params["allow_remote"]
    env = _env(dashboard)
    assert env[config.ENV_DASHBOARD_PASSWORD] == {
        "secretKeyRef": {"name": "fishopt-secrets", "key": "dashboard-password"}
    }


def test_every_secret_service_and_claim_used_is_defined(resources: dict) -> None:
    secret = resources[("Secret", "fishopt-secrets")]
    keys = set(secret["stringData"])
    claims = {name for kind, name in resources if kind == "PersistentVolumeClaim"}
    for (kind, name), doc in resources.items():
        if kind not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "fishopt-secrets" and ref["key"] in keys, (name, e)
                assert "password" not in e["name"].lower() or "valueFrom" in e, (name, e)
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            templates = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= set(volumes) | templates, name
        for v in pod.get("volumes", []):
            assert v["persistentVolumeClaim"]["claimName"] in claims
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if "selector" in doc["spec"]:
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    for (kind, name), doc in resources.items():
        if kind == "Service":
            selected = doc["spec"]["selector"]
            assert any(
                selected.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                for (k, _n), d in resources.items()
                if k in ("Deployment", "StatefulSet")
            ), name


def test_slurm_array_runs_the_chaos_tested_command() -> None:
    text = SLURM.read_text()
    subprocess.run(["bash", "-n", str(SLURM)], check=True)
    assert re.search(r"^#SBATCH --array=\d+-\d+$", text, re.M)
    assert re.search(r"^#SBATCH --signal=TERM@\d+$", text, re.M)
    (line,) = [x.strip() for x in text.splitlines() if x.strip().startswith("srun ")]
    argv = shlex.split(line.split("||")[0])
    assert argv[:2] == ["srun", "fishopt"]
    assert argv[2:] == chaos.worker_argv("$FISHOPT_STUDY")
    assert _fishopt_command(["worker", "optimizers", *argv[4:]]).params["threads"] == 1
    exported = set(re.findall(r"^export (\w+)=", text, re.M))
    assert exported - {"OMP_NUM_THREADS"} <= set(chaos.WORKER_ENV)
    assert config.ENV_STORAGE in text and "PGPASSWORD=" not in text  # ~/.pgpass, not the file
