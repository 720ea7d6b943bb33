"""`reprozoo ui` in a real headless Chromium: a reviewer sees the paper's experiment, its run with the
claimed, gap and reproduced metrics, and the registry's champion. The screenshots go to the test's own folder,
so a test run leaves the tree clean; `REPROZOO_SCREENSHOTS=reports pytest tests/pipelines/test_mlflow_ui.py`
refreshes the README's."""

import os

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import CHROMIUM, browse
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)


@pytest.mark.slow
@pytest.mark.xdist_group("ui")  # with the other tests of the session's one server
def test_a_reviewer_sees_claims_gaps_and_the_champion(served, tmp_path):
    url, first_line, project, _ = served
    shots = ROOT / os.environ["REPROZOO_SCREENSHOTS"] if os.environ.get("REPROZOO_SCREENSHOTS") else tmp_path
    assert first_line.startswith(f"MLflow UI for sqlite:///{project}/mlflow.db: {url}")
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
