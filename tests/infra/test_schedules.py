"""infra/schedules and the CI workflow: each runs `reprozoo retrain` where the README says, on the same
schedule, never two at once, and keeps credentials out of the files."""

import configparser
import re

import yaml

from tests.helpers import ROOT

HERE = ROOT / "infra/schedules"


def test_the_cronjob_submits_retrain_as_a_ray_job_to_the_kuberay_cluster():
    cron = yaml.safe_load((HERE / "retrain-cronjob.yaml").read_text())
    assert (
        cron["apiVersion"] == "batch/v1"
        and cron["kind"] == "CronJob"
        and cron["spec"]["concurrencyPolicy"] == "Forbid"
    )
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert (
        command[:4] == ["python", "-m", "pipelines", "submit"] and "--cwd" in command and "--gpus" in command
    )
    assert "python -m pipelines retrain" in command[command.index("--") + 3]
    head = yaml.safe_load_all((ROOT / "infra/kuberay/raycluster.yaml").read_text()).__next__()
    assert command[command.index("--address") + 1] == f"http://{head['metadata']['name']}-head-svc:8265"
    workspace = command[command.index("--cwd") + 1]
    mounts = head["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert any(
        workspace.startswith(m["mountPath"]) for m in mounts
    )  # the checkout lives on the mounted volume
    assert cron["spec"]["schedule"] == "0 3 * * *"


def test_systemd_timer_and_crontab_run_the_same_command_nightly():
    service = configparser.ConfigParser(strict=False)
    service.read_string((HERE / "reprozoo-retrain.service").read_text())
    timer = configparser.ConfigParser(strict=False)
    timer.read_string((HERE / "reprozoo-retrain.timer").read_text())
    assert (
        service["Service"]["ExecStart"].endswith("reprozoo retrain")
        and service["Service"]["Type"] == "oneshot"
    )
    assert service["Service"]["EnvironmentFile"].startswith("-/etc/reprozoo/")  # secrets outside the repo
    assert (
        timer["Timer"]["OnCalendar"] == "*-*-* 03:00:00" and timer["Install"]["WantedBy"] == "timers.target"
    )
    (line,) = [row for row in (HERE / "crontab").read_text().splitlines() if row and not row.startswith("#")]
    assert line.startswith("0 3 * * * ") and "flock -n" in line and "reprozoo retrain" in line


def test_the_ci_workflow_has_a_schedule_and_no_inline_secret():
    text = (ROOT / ".github/workflows/retrain.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow[True]["schedule"] == [{"cron": "0 3 * * *"}]  # YAML reads the key `on` as True
    assert any("reprozoo retrain" in step.get("run", "") for step in workflow["jobs"]["retrain"]["steps"])
    for value in workflow["jobs"]["retrain"]["env"].values():
        assert re.fullmatch(r"\$\{\{ (secrets|vars)\.\w+ \}\}", value)


def test_the_readme_says_how_to_install_each():
    text = (ROOT / "infra/README.md").read_text()
    for name in (
        "reprozoo-retrain.timer",
        "infra/schedules/crontab",
        "retrain-cronjob.yaml",
        ".github/workflows/retrain.yml",
    ):
        assert name in text
