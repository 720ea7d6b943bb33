"""Wall seconds per named phase of a verb: what `reprozoo evaluate` prints and logs to its MLflow run, and
what `reprozoo bench` reads back to say where a stage's time goes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

EVALUATE_WORK = "test pass"  # evaluate's job; every other phase of it is overhead (read by the bench too)


class Phases:
    def __init__(self, **already: float) -> None:
        self.seconds: dict[str, float] = dict(already)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return sum(self.seconds.values())

    def overhead(self, work: str) -> float:
        """Everything but the `work` phase: what the stage costs beyond the job it is there for."""
        return self.total() - self.seconds.get(work, 0.0)

    def line(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
