"""`reprozoo repro` hands each stage's lock entry from a worker's checkout to the driver's dvc.lock: the entry
must arrive as DVC wrote it, or a local `dvc repro` afterwards re-runs the stage."""

from dvc.utils.serialize import load_yaml

from pipelines.repro import read_lock, write_lock


def test_a_lock_entry_keeps_its_numbers_from_the_worker_to_the_driver(tmp_path):
    # fcn's smoke lr and neural_style's ratio: DVC writes 1e-06, which YAML 1.1 (PyYAML) reads as a string.
    entry = {
        "cmd": "reprozoo train x",
        "params": {"params.yaml": {"papers.x": {"lr": [1e-06], "ratio": 1e-05}}},
    }
    worker, driver = tmp_path / "worker", tmp_path / "driver"
    worker.mkdir(), driver.mkdir()
    write_lock(worker, {"train@x": entry})  # DVC's own writer, as `dvc repro` in the worker's checkout
    write_lock(driver, read_lock(worker))
    assert load_yaml(driver / "dvc.lock")["stages"]["train@x"] == entry
