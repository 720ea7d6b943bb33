"""Claims as data: what each paper reports, the one verdict function that judges a result against it, and the
contract every paper's LightningModule class meets (`PaperModule`), which is all the verbs read of a paper."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

Status = Literal["reproduced", "not_reproduced", "not_comparable"]
Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Claim:
    metric: str  # the key test_step logs, e.g. "test/acc_5way_1shot"
    claimed: float  # the paper's number, in the unit test_step logs (a fraction, not a percent)
    source: str  # where in the paper: "Table 1", "Fig. 3", "§4.2"
    tolerance: float  # |reproduced - claimed| within this counts as reproduced
    higher_is_better: bool = True
    row: str | None = None  # the claim's cell in its source table ("lstm", "R=20"), for the report's grid
    column: str | None = None
    # True once the number was checked against the paper's own text (the table or figure `source` names);
    # False where it was carried over from a summary and awaits that check. The report shows which.
    verified: bool = True
    # The data the paper measured this claim on, where it is not the paper's main dataset (Batch Norm's §4.1
    # is on MNIST, its Fig. 3 on ImageNet).
    dataset: str | None = None

    def verdict(self, reproduced: float | None, comparable: bool) -> Status:
        """A result on other data or another recipe is never judged against the paper's number.

        Beating the claim by more than the tolerance still counts as reproduced: the claim held.
        """
        if not comparable or reproduced is None:
            return "not_comparable"
        gap = reproduced - self.claimed if self.higher_is_better else self.claimed - reproduced
        return "reproduced" if gap >= -self.tolerance else "not_reproduced"


@dataclass(frozen=True)
class Deviation:
    """Where this project's paper recipe departs from what the paper states, or fills a gap it leaves. A
    deviation that `moves_number` makes every claim it `affects` not_comparable, whatever data it ran on; one
    that cannot move the number says `why` (a published record carries both)."""

    what: str
    moves_number: bool
    why: str = ""
    affects: str = ""  # a substring of the claims' metric keys it touches; "" for every claim


@dataclass(frozen=True)
class Reference:
    """Another published figure that the same protocol can be held against (a baseline, people), shown
    beside a reproduced claim."""

    metric: str
    value: float
    source: str  # who and where: "Lake et al. 2015, people"


@dataclass(frozen=True)
class Paper:
    key: str  # PAPERS key, params section, DVC stage item, MLflow experiment
    title: str
    authors: str
    year: int
    arxiv: str
    dataset: str  # the dataset the paper used (a fact); params.yaml chooses what a run uses
    claims: tuple[Claim, ...]
    # False where `dataset` only stands in for the paper's data (BERT's BooksCorpus + Wikipedia is not
    # WikiText-103): then no run is judged against the paper's numbers, whatever its profile.
    dataset_is_the_papers: bool = True
    primary_metric: str | None = None  # the headline claim when it is not the first one listed
    deviations: tuple[Deviation, ...] = ()  # the paper profile's departures from the paper (Differs:)
    references: tuple[Reference, ...] = ()

    @property
    def primary(self) -> Claim:
        """The claim that ranks models of this paper (best checkpoint, champion in the registry)."""
        return next((c for c in self.claims if c.metric == self.primary_metric), self.claims[0])


@runtime_checkable
class PaperModule(Protocol):
    """What the tooling reads from a paper's LightningModule class, all of it without building the model.

    A paper class may also define `figures(self, data, history) -> dict[str, Figure]`, pictures evaluate logs,
    and `curve_metrics(self, history) -> dict[str, float]`, claims read off the run's own training and
    validation curves (`curve/...` keys), as a paper reads them off its figures."""

    paper: ClassVar[Paper]  # the publication: title, claims
    exportable: ClassVar[bool]  # torch.export can capture the net; False: the checkpoint is the model

    @classmethod
    def monitor(cls, hparams: Mapping[str, Any]) -> tuple[str, Mode]:
        """The validation metric best.ckpt tracks for this recipe (every hparam, defaults included)."""
        ...


def with_defaults(cls: type, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Every keyword argument of `cls.__init__`: the signature's defaults, then the recipe's values over
    them."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty
    }
    return {**defaults, **hparams}


def monitor(cls: type[PaperModule], hparams: Mapping[str, Any]) -> tuple[str, Mode]:
    """The monitored metric of `cls` for a recipe that names only some hparams."""
    return cls.monitor(with_defaults(cls, hparams))
