"""infra/mlflow: the compose file a team starts is well-formed, pinned, local by default, and holds no
secret."""

import re

import yaml

from tests.helpers import ROOT

HERE = ROOT / "infra" / "mlflow"
COMPOSE = yaml.safe_load((HERE / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_postgres_backend_s3_artifacts_served_by_mlflow():
    command = " ".join(SERVICES["mlflow"]["entrypoint"])
    assert '--backend-store-uri "postgresql://' in command and "@postgres:5432/mlflow" in command
    assert "--artifacts-destination s3://mlflow" in command and "--serve-artifacts" in command
    assert SERVICES["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "mlflow==3.17.2" in (HERE / "Dockerfile").read_text()  # the client's version (constraints.txt)
    assert "mlflow==3.17.2" in (ROOT / "constraints.txt").read_text()


def test_the_buckets_of_the_artifacts_and_of_dvcs_remote_are_made_and_s3_is_reachable_when_bound():
    """infra/README.md's cluster: `dvc remote add -d shared s3://dvc/reprozoo`, endpoint MinIO's port 9000."""
    assert "mc mb --ignore-existing store/mlflow store/dvc" in SERVICES["bucket"]["entrypoint"][-1]
    assert "${MINIO_BIND:-127.0.0.1}:9000:9000" in SERVICES["minio"]["ports"]
    assert "s3://dvc/" in (ROOT / "infra" / "README.md").read_text()


def test_every_image_is_pinned_and_every_port_is_loopback_by_default():
    for name, service in SERVICES.items():
        if "image" in service:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", service["image"]) and not service["image"].endswith(
                ":latest"
            ), name
        for port in service.get("ports", []):
            assert port.startswith(
                ("127.0.0.1:", "${MLFLOW_BIND:-127.0.0.1}:", "${MINIO_BIND:-127.0.0.1}:")
            ), (name, port)


def test_no_secret_is_written_in_the_compose_file_and_env_example_names_each_one():
    required = set()
    for service in SERVICES.values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY|_USER$", key):
                assert isinstance(value, str) and value.startswith("${"), (key, value)
                required.add(re.match(r"\$\{(\w+)", value).group(1))
    example = dict(
        line.split("=", 1)
        for line in (HERE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required <= set(example) and ".env" in (ROOT / ".gitignore").read_text().split()
