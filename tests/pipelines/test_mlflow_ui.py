"""`reprozoo ui` in a real headless Chromium: a reviewer sees the paper's experiment, its run with the
claimed, gap and reproduced metrics, and the registry's champion. The screenshots go to the test's own folder,
so a test run leaves the tree clean; `REPROZOO_SCREENSHOTS=reports pytest tests/pipelines/test_mlflow_ui.py`
refreshes the README's."""

import os
import signal
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import CHROMIUM, browse, free_port, wait_for_http
from tests.helpers import ROOT, cli

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture
def ui(project):
    """A smoke-trained and evaluated protonets in the project's store, and `reprozoo ui` serving it."""
    cli(project, "train", "protonets")
    cli(project, "evaluate", "protonets")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "ui", "--port", str(port)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # its own group: the server's workers go with it
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=90)
        yield f"http://127.0.0.1:{port}", server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_reviewer_sees_claims_gaps_and_the_champion(project, ui, tmp_path):
    url, server = ui
    shots = ROOT / os.environ["REPROZOO_SCREENSHOTS"] if os.environ.get("REPROZOO_SCREENSHOTS") else tmp_path
    assert server.stdout.readline().startswith(f"MLflow UI for sqlite:///{project}/mlflow.db: {url}")
    client = MlflowClient(f"sqlite:///{project}/mlflow.db")
    experiment = client.get_experiment_by_name("protonets")
    (run,) = client.search_runs([experiment.experiment_id])
    texts = browse(
        [
            (
                f"{url}/#/experiments/{experiment.experiment_id}/runs",
                ["protonets", "protonets-smoke"],
                shots / "mlflow_runs.png",
            ),
            (
                f"{url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}",
                [
                    "claimed/test/acc_5way_1shot",
                    "gap/test/acc_5way_1shot",
                    "untrained/test/acc_5way_1shot",
                    "status/test/acc_5way_1shot",
                ],
                shots / "mlflow_run.png",
                "Metrics (",
            ),
            (
                f"{url}/#/models/reprozoo.protonets",
                ["reprozoo.protonets", "@\xa0champion", "@\xa0challenger"],
                shots / "mlflow_registry.png",
                "Versions",
            ),
        ],
        width=1600,
        height=1000,
    )
    claimed = run.data.metrics["claimed/test/acc_5way_1shot"]
    assert f"{claimed:g}"[:4] in texts[1]  # the claimed value itself, not only its name
    assert (shots / "mlflow_registry.png").stat().st_size > 10_000
