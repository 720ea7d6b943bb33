"""The champion/challenger rule on a real MLflow registry (sqlite): only a strictly better challenger is
promoted."""

import pytest
from mlflow.tracking import MlflowClient

from pipelines import registry, tracking
from pipelines.claims import headline
from pipelines.registry import CHALLENGER, CHAMPION, model_name


@pytest.fixture
def store(project):
    uri = f"sqlite:///{project}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model(model_name("protonets"))
    return tracking.Store(uri, (project / "mlartifacts").as_uri()), client


def add_version(client, value, metric="test/acc_5way_1shot", higher="true"):
    """A version as `register` leaves it: tagged with its headline, aliased challenger (champion if first)."""
    tags = (
        {}
        if value is None
        else {"headline": metric, "headline_value": str(value), "headline_higher_is_better": higher}
    )
    version = str(client.create_model_version(model_name("protonets"), "file:///nowhere", tags=tags).version)
    client.set_registered_model_alias(model_name("protonets"), CHALLENGER, version)
    if version == "1":
        client.set_registered_model_alias(model_name("protonets"), CHAMPION, version)
        registry.record(client, "protonets", version, "promoted", "the first version")
    return version


def champion(client):
    return str(client.get_model_version_by_alias(model_name("protonets"), CHAMPION).version)


def test_a_better_challenger_is_promoted_and_the_reason_recorded(store):
    mlflow_store, client = store
    add_version(client, 0.80)
    add_version(client, 0.85)
    decision = registry.decide(mlflow_store, "protonets")
    assert decision.action == "promoted" and champion(client) == "2"
    assert "0.8500 beats champion v1's 0.8000" in decision.reason
    assert client.get_model_version(model_name("protonets"), "2").tags["decision"] == "promoted"


@pytest.mark.parametrize("value, word", [(0.80, "ties"), (0.70, "is worse than")])
def test_a_tie_or_a_regression_keeps_the_champion(store, value, word):
    mlflow_store, client = store
    add_version(client, 0.80)
    add_version(client, value)
    decision = registry.decide(mlflow_store, "protonets")
    assert decision.action == "kept" and champion(client) == "1" and word in decision.reason
    assert client.get_model_version(model_name("protonets"), "2").tags["decision_reason"] == decision.reason
    assert registry.decide(mlflow_store, "protonets").reason.startswith("version 2 was already decided: kept")


def test_lower_is_better_claims_are_compared_the_right_way_round(store):
    mlflow_store, client = store
    add_version(client, 0.30, metric="test/error", higher="false")
    add_version(client, 0.25, metric="test/error", higher="false")
    assert registry.decide(mlflow_store, "protonets").action == "promoted" and champion(client) == "2"


def test_without_a_numeric_claim_the_champion_stays_until_promoted_by_hand(store):
    mlflow_store, client = store
    add_version(client, None)
    add_version(client, None)
    decision = registry.decide(mlflow_store, "protonets")
    assert decision.action == "kept" and champion(client) == "1" and "promote by hand" in decision.reason


def test_the_headline_is_the_primary_claim_or_else_the_first_one_measured():
    assert (
        headline("protonets", {"test/acc_20way_5shot": 0.9, "test/acc_5way_1shot": 0.8}).metric
        == "test/acc_5way_1shot"
    )
    assert headline("protonets", {"test/acc_20way_5shot": 0.9}).metric == "test/acc_20way_5shot"
    assert headline("neural_style", {"test/content_loss": 1.0}) is None


def test_a_first_version_reports_its_promotion(store):
    """The first version is promoted when it is registered; deciding on it afterwards says so, not "kept"."""
    mlflow_store, client = store
    add_version(client, 0.5)
    decision = registry.decide(mlflow_store, "protonets")
    assert decision.action == "promoted" and decision.reason == "version 1 was already decided: promoted"
