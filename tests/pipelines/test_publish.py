"""Evidence records (issue 25): `reprozoo publish` turns an evaluated run into a record the rules accept; it
refuses what a record must not claim; every committed record is valid, and the README shows exactly them."""

import copy
import json
import subprocess

import pytest

from datamodules.mnist import OFFICIAL_SHA256 as MNIST_SHA256
from pipelines import evidence, paths
from pipelines.config import load_params
from pipelines.errors import StageError
from pipelines.evaluate import evaluate_experiment
from pipelines.publish import interval, params_changes, publish
from pipelines.train import train_experiment
from tests.helpers import ROOT, chdir

COMMITTED = evidence.records(ROOT)


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def evaluated(project):
    """The tiny protonets run, trained and evaluated, in a git repository whose commit holds the code."""
    params = load_params()
    train_experiment(params, "protonets")
    evaluate_experiment(params, "protonets")
    (project / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "params.yaml", "recipes", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    return params


def test_a_published_smoke_run_is_a_valid_record_and_never_judged(evaluated, project):
    path = publish(evaluated, "protonets", notes="a tiny run")
    record = evidence.read(path)  # the schema and the status rules, read back
    assert (project / path).parent.resolve() == (project / "results" / "protonets").resolve()
    assert path.name.startswith("smoke-synthetic-") and record.git_commit == git("rev-parse", "HEAD").strip()
    assert all(c.status == "not_comparable" for c in record.claims) and record.claims
    assert record.fingerprint == json.loads(paths.run_record("protonets").read_text())["fingerprint"]
    as_json = json.loads(json.dumps(load_params().recipe("protonets").flat()))
    assert record.recipe == as_json and record.steps == 20
    # The smoke block's changes are deviations from the paper's recipe that move numbers.
    assert any(d.moves_number and "trainer.max_steps" in d.what for d in record.differs_from_paper)
    assert record.data.files and record.hardware["cores"] and record.versions["torch"]
    assert record.wall_time_s > 0 and record.notes == "a tiny run"
    assert record.figures and all((project / figure).exists() for figure in record.figures)
    # protonets logs its per-episode interval; the record says what it is over.
    assert all(c.ci95 is not None and c.ci95_over == "test episodes" for c in record.claims)


@pytest.mark.slow
def test_publishing_refuses_a_dirty_tree_and_another_runs_evaluation(evaluated, project):
    (project / "code.py").write_text("x = 2\n")
    with pytest.raises(StageError, match=r"dirty tree: code\.py changed since"):
        publish(evaluated, "protonets")
    git("checkout", "code.py")
    metrics = json.loads(paths.metrics("protonets").read_text())
    paths.metrics("protonets").write_text(json.dumps({**metrics, "mlflow_run_id": "another"}))
    with pytest.raises(StageError, match="the evaluation of run another, not of the checkpoint"):
        publish(evaluated, "protonets")
    assert not (project / "results").exists()  # nothing half-written


def record_of(status="reproduced", profile="paper", source="generated", moves=False, reproduced=0.01):
    """A fast weights record, as publish writes them, for the rules' cases."""
    return evidence.Record.model_validate(
        {
            "key": "fast_weights",
            "paper": "fast_weights",
            "profile": profile,
            "published": "2026-11-29",
            "recipe": {},
            "params_changes": {},
            "differs_from_paper": [{"what": "x", "moves_number": moves, "why": "", "affects": ""}],
            "fingerprint": "0" * 16,
            "git_commit": "a" * 40,
            "versions": {"python": "3.11", "torch": "2", "pytorch-lightning": "2"},
            "hardware": {"cpu": "c", "cores": "1", "gpu": "none"},
            "data": {
                "dataset": "associative_retrieval",
                "source": source,
                "settings": {},
                "files": {"train.txt": "0" * 64},
            },
            "wall_time_s": 1.0,
            "evaluate_s": 1.0,
            "steps": 1,
            "seeds": [0],
            "claims": [
                {
                    "metric": "test/err_fast_weights_r20",
                    "claimed": 0.0181,
                    "reproduced": reproduced,
                    "ci95": None,
                    "ci95_over": None,
                    "tolerance": 0.02,
                    "higher_is_better": False,
                    "status": status,
                    "source": "Table 1",
                    "verified": True,
                }
            ],
            "mlflow_run_id": "r",
            "figures": [],
        }
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({}, "reproduced"),
        ({"reproduced": 0.2}, "not_reproduced"),
        ({"profile": "smoke"}, "not_comparable"),
        ({"source": "synthetic"}, "not_comparable"),
        ({"moves": True}, "not_comparable"),  # a deviation that can move the number
    ],
)
def test_the_status_rules(case, expected):
    record = record_of(**case)
    assert evidence.expected_status(record, record.claims[0]) == expected
    for wrong in {"reproduced", "not_reproduced", "not_comparable"} - {expected}:
        bad = copy.deepcopy(record)
        bad.claims[0].status = wrong
        with pytest.raises(evidence.EvidenceError, match=f"status is {wrong}, the rules give {expected}"):
            evidence.check(bad, "r.json")


def test_a_record_must_name_the_papers_own_number():
    record = record_of()
    record.claims[0].claimed = 0.5
    with pytest.raises(evidence.EvidenceError, match="the paper's is 0.0181"):
        evidence.check(record, "r.json")


@pytest.mark.parametrize("path", [p for p, _ in COMMITTED], ids=lambda p: p.stem)
def test_every_committed_record_is_valid_and_traceable(path):
    """Read back under the rules; its commit is in this history; its figures are committed beside it;
    MNIST's files are the official ones."""
    record = evidence.read(ROOT / path)
    git("merge-base", "--is-ancestor", record.git_commit, "HEAD", cwd=ROOT)
    for figure in record.figures:
        assert (ROOT / evidence.RESULTS.parent / figure).exists(), figure
    if record.data.dataset == "mnist" and record.data.source in evidence.REAL_SOURCES:
        names = {name.rsplit("/", 1)[-1]: digest for name, digest in record.data.files.items()}
        assert names == MNIST_SHA256


def test_the_readme_shows_exactly_the_committed_records():
    text = (ROOT / "README.md").read_text()
    assert evidence.readme_section(text, COMMITTED) == text, "run `reprozoo report` and commit README.md"


def test_the_report_lists_every_claim_no_run_has_measured():
    from lightning_modules import PAPERS
    from pipelines.report import unmeasured

    params = load_params(ROOT / "params.yaml")
    everything = unmeasured(params, [])
    assert everything.count("\n| ") == sum(len(m.paper.claims) for m in PAPERS.values()) + 1  # + header
    measured = [{"claims": [{"metric": "test/acc_rfm_minus_mlp"}]}]
    left = unmeasured(params, measured)
    assert "`test/acc_rfm_minus_mlp`" not in left and "`test/acc_rfm_minus_lstm`" in left
    assert "`relational_forward_model`, `relational_forward_model_coin_game`" in left  # what would measure it


def test_a_claim_on_the_papers_other_data_is_judged_there():
    """Batch Norm's §4.1 claims are on MNIST, its Fig. 3 on ImageNet: an MNIST run judges only the former."""
    record = record_of()
    record = record.model_copy(
        update={
            "key": "batch_norm_mnist",
            "paper": "batch_norm",
            "data": record.data.model_copy(update={"dataset": "mnist", "source": "local"}),
            "differs_from_paper": [],
        }
    )
    mnist, imagenet = (
        record.claims[0].model_copy(update={"metric": m, "claimed": 0.0, "higher_is_better": True})
        for m in ("test/acc_bn_minus_plain", "test/top1_acc_bn_inception")
    )
    assert evidence.expected_status(record, mnist) == "reproduced"
    assert evidence.expected_status(record, imagenet) == "not_comparable"
    assert "mnist from source local, not the paper's data" in evidence.judgeable(record, imagenet.metric)[1]


def test_a_binomial_interval_only_for_a_rate_over_test_examples():
    from pipelines.publish import interval

    half, over = interval("test/err_fc10_wd4", 0.1, {}, 10_000)
    assert over == "test examples" and half == pytest.approx(1.96 * (0.1 * 0.9 / 10_000) ** 0.5)
    for metric in ("test/acc_bn_minus_plain", "curve/median_drift_bn_over_plain", "test/distortion_fc10_wd4"):
        assert interval(metric, 0.1, {}, 10_000) == (None, None), metric
    assert interval("test/acc_5way_1shot", 0.9, {"test/acc_5way_1shot_ci95": 0.01}, 10) == (
        0.01,
        "test episodes",
    )


@pytest.mark.slow
def test_a_publisher_may_set_a_claim_aside_but_never_grant_one(evaluated):
    """An auxiliary net trained off its paper recipe (intriguing's transfer model at an FC10 row's λ) is not
    judged: the claim turns not_comparable with the reason; a name that is no measured claim is refused."""
    with pytest.raises(StageError, match="not a claim this run measured"):
        publish(evaluated, "protonets", set_aside=["test/acc_99way=why"])
    with pytest.raises(StageError, match="expected METRIC=why"):
        publish(evaluated, "protonets", set_aside=["test/acc_5way_1shot"])
    record = record_of()
    record.set_aside = {"test/err_fast_weights_r20": "trained off its recipe"}
    assert evidence.expected_status(record, record.claims[0]) == "not_comparable"
    assert (
        "set aside by the publisher: trained off its recipe"
        in evidence.judgeable(record, "test/err_fast_weights_r20")[1]
    )


def test_each_interval_says_what_it_is_over():
    """A run's own interval is over its test episodes, or, for a training error, over the training examples it
    was counted on; a rate without one gets a binomial interval over the test examples; a mean, none."""
    logged = {"test/acc_20way_1shot_ci95": 0.03, "test/train_err_fc10_wd4_ci95": 0.002}
    assert interval("test/acc_20way_1shot", 0.91, logged, 400) == (0.03, "test episodes")
    assert interval("test/train_err_fc10_wd4", 0.07, logged, 10_000) == (0.002, "training examples")
    assert interval("test/err_fc10_wd4", 0.25, {}, 10_000) == (pytest.approx(0.00848705), "test examples")
    assert interval("test/distortion_fc10_wd4", 0.06, {}, 10_000) == (None, None)


def test_a_number_written_as_dvc_writes_it_is_no_change(tmp_path):
    """`dvc exp run -S ratio=1e-5` writes `1e-05`: the same number as the committed `1.0e-5`, not a change."""
    (tmp_path / "params.yaml").write_text("ratio: 1.0e-5\nsteps: 10\n")
    for args in (
        ["init", "-q"],
        ["add", "params.yaml"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "p"],
    ):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "params.yaml").write_text("ratio: 1e-05\nsteps: 20\n")
    with chdir(tmp_path):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        assert params_changes(commit) == {"steps": {"committed": 10, "ran": 20}}
