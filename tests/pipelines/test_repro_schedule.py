"""The scheduler both kinds of `reprozoo repro` share (pipelines/repro.drive): a stage starts once the stages
it reads are done, never more than the slots at once, and a failure skips only the stages that read it."""

from pipelines.repro import Plan, drive

#   fetch@a → train@a → evaluate@a ┐
#   fetch@b → train@b → evaluate@b ┼→ report
#   fetch@c ───────────────────────┘
READS = {
    "fetch@a": [],
    "fetch@b": [],
    "fetch@c": [],
    "train@a": ["fetch@a"],
    "train@b": ["fetch@b"],
    "evaluate@a": ["train@a", "fetch@a"],
    "evaluate@b": ["train@b", "fetch@b"],
    "report": ["evaluate@a", "evaluate@b", "fetch@c"],
}


def simulate(failing: set[str], slots: int | None) -> tuple[dict, list[tuple[str, ...]]]:
    """Runs the plan with stages that end in start order; returns the states and who ran side by side."""
    running: list[str] = []
    together: list[tuple[str, ...]] = []

    def start(name: str) -> str:
        running.append(name)
        together.append(tuple(running))
        return name

    def wait(handles: list[str]):
        name = handles[0]
        running.remove(name)
        return name, RuntimeError(f"{name} failed") if name in failing else {"seconds": 1.0}

    state, _ = drive(Plan("", list(READS), READS), start, wait, lambda *_: None, slots)
    return state, together


def test_stages_run_side_by_side_within_the_slots_and_after_what_they_read():
    state, together = simulate(set(), slots=2)
    assert set(state.values()) == {"done"}
    assert max(len(group) for group in together) == 2  # two at a time, never three
    assert max(len(group) for group in simulate(set(), slots=None)[1]) == 3  # unbounded: all three fetches
    started = [group[-1] for group in together]
    for name, reads in READS.items():
        assert all(started.index(r) < started.index(name) for r in reads), name


def test_a_failure_skips_only_the_stages_that_read_it():
    state, _ = simulate({"train@b"}, slots=None)
    assert state == {
        "fetch@a": "done",
        "fetch@b": "done",
        "fetch@c": "done",
        "train@a": "done",
        "train@b": "failed",
        "evaluate@a": "done",
        "evaluate@b": "skipped",
        "report": "skipped",
    }
