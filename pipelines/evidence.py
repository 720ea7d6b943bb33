"""Evidence records: results/<experiment>/<profile>-<source>-<date>.json, one published run each, with what a
reader needs to check its numbers (the recipe as it ran and how it differs from the paper's, the data's
checksums, the commit, the machine, the time). Their schema, the status rules every record obeys, and the
table that the report and the README show. Shared by publish, report and the tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, ValidationError

from lightning_modules import PAPERS
from lightning_modules.paper import Status
from pipelines.claims import number
from pipelines.errors import ReprozooError
from pipelines.markers import markers, replace_block

RESULTS = Path("results")
REAL_SOURCES = ("download", "local", "generated")  # the paper's own data (or its task's own generator)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
README_START = markers("results")[0]  # the report rewrites README.md's table only where it has one


class EvidenceError(ReprozooError):
    """A record that breaks the schema, the status rules or the provenance it must carry."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Deviation(Strict):
    what: str
    moves_number: bool
    why: str
    affects: str = ""  # a substring of the claims' metric keys it touches; "" for every claim


class Reference(Strict):
    value: float
    source: str


class ClaimRecord(Strict):
    metric: str
    claimed: float
    reproduced: float | None
    ci95: NonNegativeFloat | None  # the half-width of a 95% interval
    ci95_over: Literal["test examples", "test episodes", "training examples", "seeds"] | None
    tolerance: NonNegativeFloat
    higher_is_better: bool
    status: Status
    source: str  # the paper's table or figure
    verified: bool  # the claimed number was checked against the paper's own text
    references: list[Reference] = []


class Data(Strict):
    dataset: str
    source: str  # synthetic, bundled, download, local, generated
    settings: dict  # the raw copy's source.json: path, seed, generator settings
    files: dict[str, str] = Field(min_length=1)  # every raw file read, by path under data/raw/: sha256


class Record(Strict):
    key: str
    paper: str
    profile: Literal["smoke", "paper"]
    published: str  # ISO date
    recipe: dict  # every setting as it ran (hparams with the paper's defaults, data, trainer, seed)
    params_changes: dict  # params.yaml and recipes/ at publishing vs at git_commit (`dvc exp run -S`)
    differs_from_paper: list[Deviation]
    fingerprint: str
    git_commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    versions: dict[str, str]
    hardware: dict[str, str]
    data: Data
    wall_time_s: NonNegativeFloat  # training, from its MLflow run's start to its end
    evaluate_s: NonNegativeFloat
    steps: PositiveInt
    seeds: list[int] = Field(min_length=1)
    claims: list[ClaimRecord] = Field(min_length=1)
    mlflow_run_id: str
    figures: list[str]
    notes: str = ""
    # claims the publisher sets aside as not this run's to judge, each with why (a publisher may only
    # withhold a verdict, never grant one)
    set_aside: dict[str, str] = {}


def judgeable(record: Record, metric: str) -> tuple[bool, str]:
    """Whether a claim of this record may be judged against the paper, and if not, why."""
    paper = PAPERS[record.paper].paper
    claim = next((c for c in paper.claims if c.metric == metric), None)
    if record.profile != "paper":
        return False, f"profile {record.profile}, not the paper's recipe"
    if record.data.source not in REAL_SOURCES or record.data.dataset != (
        (claim and claim.dataset) or paper.dataset
    ):
        return False, f"{record.data.dataset} from source {record.data.source}, not the paper's data"
    if not paper.dataset_is_the_papers:
        return False, f"{paper.dataset} only stands in for the paper's data"
    if metric in record.set_aside:
        return False, f"set aside by the publisher: {record.set_aside[metric]}"
    moving = [d.what for d in record.differs_from_paper if d.moves_number and d.affects in metric]
    if moving:
        return False, f"differs from the paper where the number can move: {'; '.join(moving)}"
    return True, ""


def expected_status(record: Record, claim: ClaimRecord) -> Status:
    """The one verdict a claim may carry: the paper's claim against our number, within its tolerance, and only
    where the run may be judged at all."""
    if claim.reproduced is None or not judgeable(record, claim.metric)[0]:
        return "not_comparable"
    gap = claim.reproduced - claim.claimed if claim.higher_is_better else claim.claimed - claim.reproduced
    return "reproduced" if gap >= -claim.tolerance else "not_reproduced"


def check(record: Record, where: str) -> Record:
    """The rules a written record obeys: each status is the one the rules give, the paper's claims are the
    ones it names, every data file has a sha256, and provenance is complete."""
    if record.paper not in PAPERS:
        raise EvidenceError(f"{where}: unknown paper {record.paper!r}")
    claims = {c.metric: c for c in PAPERS[record.paper].paper.claims}
    for claim in record.claims:
        if claim.metric not in claims:
            raise EvidenceError(f"{where}: claims.{claim.metric}: {record.paper} makes no such claim")
        if claim.claimed != claims[claim.metric].claimed:
            raise EvidenceError(
                f"{where}: claims.{claim.metric}.claimed is {claim.claimed}, the paper's is "
                f"{claims[claim.metric].claimed}"
            )
        if claim.status != (expected := expected_status(record, claim)):
            raise EvidenceError(
                f"{where}: claims.{claim.metric}.status is {claim.status}, the rules give {expected} "
                f"({judgeable(record, claim.metric)[1] or 'within the tolerance or not'})"
            )
    for name, digest in record.data.files.items():
        if not SHA256.match(digest):
            raise EvidenceError(f"{where}: data.files.{name}: expected a sha256, got {digest!r}")
    needs = {"versions": ("python", "torch", "pytorch-lightning"), "hardware": ("cpu", "cores", "gpu")}
    for part, needed in needs.items():
        missing = [n for n in needed if n not in getattr(record, part)]
        if missing:
            raise EvidenceError(f"{where}: {part} lacks {', '.join(missing)}")
    return record


def read(path: Path) -> Record:
    try:
        record = Record.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as error:
        raise EvidenceError(f"{path}: not an evidence record: {str(error).splitlines()[0]}") from None
    return check(record, str(path))


def records(root: Path = Path()) -> list[tuple[Path, Record]]:
    """Every committed record (its path under `root`), oldest first within an experiment."""
    return [(path.relative_to(root), read(path)) for path in sorted((root / RESULTS).glob("*/*.json"))]


def table(found: list[tuple[Path, Record]]) -> str:
    """The report's and the README's "Reproduced on real data" table: one row per claim of every record."""
    lines = [
        "| claim | paper | ours (± 95% CI) | status | data | hardware | wall time | record |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, r in found:
        for c in r.claims:
            interval = f" ({c.ci95_over})" if c.ci95 is not None else ""
            refs = "".join(f"; {ref.source}: {number(ref.value)}" for ref in c.references)
            lines.append(
                f"| {r.key} `{c.metric}` ({c.source}) | {number(c.claimed)}{refs} | "
                f"{number(c.reproduced, c.ci95)}{interval} | {c.status} | {r.data.dataset} "
                f"({r.data.source}) | {r.hardware.get('cpu')} × {r.hardware.get('cores')}, "
                f"GPU {r.hardware.get('gpu')} | {r.wall_time_s / 60:.0f} min | "
                f"[{path.name}]({path.as_posix()}) |"
            )
    if not found:
        lines.append("| (no record yet: `reprozoo publish <key>` writes one) | | | | | | | |")
    return "\n".join(lines) + "\n"


def readme_section(text: str, found: list[tuple[Path, Record]]) -> str:
    """README.md with the table between its markers replaced by the one `results/` gives now."""
    return replace_block(text, "results", table(found))
