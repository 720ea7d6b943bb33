"""infra/ray and infra/kuberay: the cluster launcher config passes Ray's own schema (what `ray up` checks
before it touches a cloud), and the KubeRay manifests hold the fields the operator needs, at the locked Ray
version."""

import re

import pytest
import yaml

from tests.helpers import ROOT

RAY_VERSION = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
CLUSTER = yaml.safe_load((ROOT / "infra/ray/cluster.yaml").read_text())
KUBERAY = {
    (doc["kind"], doc["metadata"]["name"]): doc
    for name in ("raycluster.yaml", "rayjob.yaml")
    for doc in yaml.safe_load_all((ROOT / "infra/kuberay" / name).read_text())
}
RAYCLUSTER = KUBERAY["RayCluster", "reprozoo"]


def test_the_cluster_launcher_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(CLUSTER))  # `ray up`'s own offline check; raises on a bad field
    broken = {
        **CLUSTER,
        "available_node_types": {**CLUSTER["available_node_types"], "gpu_worker": {"min_workers": 0}},
    }
    with pytest.raises(Exception, match="Failed validating 'required'"):  # jsonschema's, through Ray
        validate_config(prepare_config(broken))


def test_the_cluster_scales_gpu_workers_and_installs_the_lock():
    gpu = CLUSTER["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] and gpu["node_config"]["InstanceType"].startswith(
        ("g", "p")
    )
    assert CLUSTER["available_node_types"][CLUSTER["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("-c constraints.txt" in command for command in CLUSTER["setup_commands"])
    assert (
        CLUSTER["file_mounts"] == {"/home/ubuntu/reprozoo": "."} and ".gitignore" in CLUSTER["rsync_filter"]
    )
    assert all("--dashboard-host=0.0.0.0" not in command for command in CLUSTER["head_start_ray_commands"])


def test_the_raycluster_has_an_autoscaled_gpu_group_and_a_shared_data_volume():
    cluster = RAYCLUSTER
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["spec"]["rayVersion"] == RAY_VERSION
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    head = cluster["spec"]["headGroupSpec"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert (
        group["minReplicas"] == 0 < group["maxReplicas"]
        and "rayStartParams" in group
        and "rayStartParams" in head
    )
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for pod in (head["template"]["spec"], group["template"]["spec"]):
        container = pod["containers"][0]
        assert container["image"] == head["template"]["spec"]["containers"][0]["image"] and not container[
            "image"
        ].endswith(":latest")
        assert {"name": "data", "mountPath": f"{container['workingDir']}/data"} in container["volumeMounts"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "reprozoo-data"}} in pod["volumes"]
    assert KUBERAY["PersistentVolumeClaim", "reprozoo-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert f"FROM rayproject/ray:{RAY_VERSION}-" in (ROOT / "infra/kuberay/Dockerfile").read_text()


def test_the_rayjob_runs_a_sweep_on_that_cluster():
    job = KUBERAY["RayJob", "reprozoo-tune-protonets"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": RAYCLUSTER["metadata"]["name"]}
    assert (
        job["spec"]["entrypoint"].startswith("cd /home/ray/reprozoo")
        and "python -m pipelines tune protonets" in job["spec"]["entrypoint"]
    )
    assert job["spec"]["submissionMode"] == "K8sJobMode"


@pytest.mark.parametrize("readme", ["infra/ray/README.md", "infra/kuberay/README.md"])
def test_each_readme_says_how_to_start_it(readme):
    text = (ROOT / readme).read_text()
    assert "reprozoo submit" in text and ("ray up" in text or "kubectl apply" in text)
