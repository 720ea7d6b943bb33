"""`reprozoo bench`: is the input pipeline or the framework the bottleneck on this machine? Each answer is a ratio
of two things measured side by side in one run, written to reports/bench.json and logged to the MLflow experiment
`reprozoo.bench`.

- loader: the WebDataset DataModule's samples/s (read, decode, transform, collate) over the decode limit (the same
  JPEG bytes decoded and transformed in a tight loop in memory), per worker for 1, 2, 4 workers; and over
  torchvision's ImageFolder reading the same JPEGs from a folder layout.
- framework: training steps/s of the Lightning module over a hand-written loop (same net, batches, optimizer).
- ddp: samples/s of 2 gloo processes over 1.
- tune: wall time of 2 concurrent Ray Tune trials over one, and a trial's start-up cost.
- pipeline: a no-op `dvc repro`, and writing shards over copying the raw files.
- gpu: ResNet-50 training images/s, plain loop vs Lightning with channels-last, bf16 and torch.compile (CUDA only).

Every result states its target and whether it held. Sizes: `tiny` (what the tests run), `default`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.files import atomic_write

REPORT = Path("reports/bench.json")
EXPERIMENT = "reprozoo.bench"
SECTIONS = ("loader", "framework", "ddp", "tune", "pipeline", "gpu")
TARGETS = {
    "loader_per_worker": 0.9,
    "framework_overhead": 0.05,
    "ddp_speedup": 1.6,
    "tune_concurrency": 1.25,
    "noop_repro_seconds": 5.0,
}
ROUNDS = 2  # timings are the best of this many rounds: the machine may be shared (a VM's neighbours)


@dataclass(frozen=True)
class Size:
    images: int  # training JPEGs of the synthetic ImageNet replica the loader reads
    batch: int
    steps: int  # timed training steps (framework, ddp, tune, gpu)
    workers: tuple[int, ...]
    framework_batch: int  # resnet_cifar's recipe batch: the framework's share of a real step


SIZES = {
    "tiny": Size(images=40, batch=8, steps=6, workers=(1, 2), framework_batch=8),
    "default": Size(images=2000, batch=32, steps=60, workers=(1, 2, 4), framework_batch=128),
}


def steady_rate(stamps: list[float], items_per_stamp: int, warmup: int) -> float:
    """Items/s between the end of the `warmup`-th step and the last one (start-up and first-step costs excluded)."""
    timed = stamps[warmup:]
    return items_per_stamp * (len(timed) - 1) / (timed[-1] - timed[0])


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---- loader ------------------------------------------------------------------------------------------------------


def bench_shards(scratch: Path, images: int) -> tuple[Path, Path]:
    """The synthetic ImageNet replica in its official archives, sharded by the real shard code."""
    from datamodules.imagenet import ImageNet
    from pipelines.shard import shard_raw

    raw, shards, classes = scratch / "raw", scratch / "shards", 10
    ImageNet.synthesize(raw, 0, classes=classes, train_per_class=max(2, images // classes), val_per_class=1)
    shard_raw(ImageNet, raw, shards, source={"source": "synthetic"}, shard_size=max(10, images // 8))
    return raw, shards


def timed_epoch(loader: Iterable) -> float:
    """Samples/s of the best pass after the first, which starts the workers and fills the shuffle buffer."""
    rates = []
    for _ in range(1 + ROUNDS):
        start, samples = time.perf_counter(), 0
        for images, _ in loader:
            samples += len(images)
        rates.append(samples / (time.perf_counter() - start))
    return max(rates[1:])


def decode_limit(jpegs: list[bytes], transform: Callable) -> float:
    """Samples/s of decoding and transforming in memory, one thread: what one worker could deliver at best. The
    transform is the DataModule's own, which ends at uint8 (the float conversion runs per batch on the device)."""
    rates = []
    with threads(1):
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for data in jpegs:
                transform(Image.open(io.BytesIO(data)).convert("RGB"))
            rates.append(len(jpegs) / (time.perf_counter() - start))
    return max(rates)


def raw_jpegs(shards: Path) -> list[bytes]:
    import tarfile

    meta = json.loads((shards / "meta.json").read_text())
    jpegs = []
    for name in meta["splits"]["train"]["shards"]:
        with tarfile.open(shards / name) as tar:
            jpegs += [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")]
    return jpegs


def bench_loader(scratch: Path, size: Size) -> dict[str, Any]:
    from torchvision.datasets import ImageFolder

    from datamodules.imagenet import ImageNet

    _, shards = bench_shards(scratch, size.images)
    jpegs = raw_jpegs(shards)
    folder = scratch / "folder"
    for n, data in enumerate(
        jpegs
    ):  # ImageFolder wants classes as folders; any class split reads the same bytes
        (folder / f"{n % 10:02d}").mkdir(parents=True, exist_ok=True)
        (folder / f"{n % 10:02d}" / f"{n:06d}.jpg").write_bytes(data)
    transform = ImageNet(shards).transform("train")
    limit = decode_limit(jpegs, transform)
    rows = {}
    for workers in size.workers:
        data = ImageNet(shards, 0, batch_size=size.batch, num_workers=workers, shuffle_buffer=len(jpegs))
        streamed = timed_epoch(data.train_dataloader())
        reference = timed_epoch(
            torch.utils.data.DataLoader(
                ImageFolder(str(folder), transform=transform),
                batch_size=size.batch,
                shuffle=True,
                drop_last=True,
                num_workers=workers,
                persistent_workers=True,
            )
        )
        rows[str(workers)] = {
            "webdataset_samples_per_s": streamed,
            "imagefolder_samples_per_s": reference,
            "per_worker_vs_decode_limit": streamed / (workers * limit),
            "vs_imagefolder": streamed / reference,
        }
    usable = [w for w in size.workers if w <= (os.cpu_count() or 1)]
    return {
        "images": len(jpegs),
        "batch": size.batch,
        "decode_limit_samples_per_s": limit,
        "workers": rows,
        "target": f"per_worker_vs_decode_limit >= {TARGETS['loader_per_worker']} for workers <= cores",
        "holds": all(
            rows[str(w)]["per_worker_vs_decode_limit"] >= TARGETS["loader_per_worker"] for w in usable
        ),
    }


# ---- framework ---------------------------------------------------------------------------------------------------


def cifar_module() -> pl.LightningModule:
    from lightning_modules.resnet import ResNet

    torch.manual_seed(0)
    return ResNet(arch="cifar", depth=20, num_classes=10, plain_twin=False, milestones=[10**9])


def synthetic_batches(batch: int, count: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch, 3, 32, 32, generator=generator),
            torch.randint(0, 10, (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def plain_loop(module: pl.LightningModule, batches: Iterable, steps: int) -> list[float]:
    """The hand-written loop: the module's net, loss and optimizer, nothing else."""
    from lightning_modules.common import classification_step

    configured = module.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    module.train()
    stamps = []
    for images, labels in islice(cycle(batches), steps):
        loss, _, _ = classification_step(module.net, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        stamps.append(time.perf_counter())
    return stamps


class Stamps(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def lightning_loop(module: pl.LightningModule, batches: list, steps: int, **trainer) -> list[float]:
    stamps = Stamps()
    loader = torch.utils.data.DataLoader(batches * (steps // len(batches) + 1), batch_size=None)
    pl.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[stamps],
        **{"accelerator": "cpu", "devices": 1, **trainer},
    ).fit(module, train_dataloaders=loader)
    return stamps.times


def bench_framework(size: Size) -> dict[str, Any]:
    batches, steps, warmup = synthetic_batches(size.framework_batch), size.steps // 2 + 3, 3
    # Best of alternating rounds (as timeit takes the best): a neighbour's burst on a shared machine then slows
    # one round of one side, not the ratio.
    rounds = [
        (
            steady_rate(plain_loop(cifar_module(), batches, steps), 1, warmup),
            steady_rate(lightning_loop(cifar_module(), batches, steps), 1, warmup),
        )
        for _ in range(ROUNDS)
    ]
    plain, lightning = (max(side) for side in zip(*rounds))
    overhead = plain / lightning - 1
    return {
        "model": "ResNet-20 (CIFAR)",
        "batch": size.framework_batch,
        "plain_steps_per_s": plain,
        "lightning_steps_per_s": lightning,
        "lightning_overhead": overhead,
        "target": f"lightning_overhead <= {TARGETS['framework_overhead']}",
        "holds": overhead <= TARGETS["framework_overhead"],
    }


# ---- ddp ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_rank(rank: int, world: int, port: int, steps: int, batch: int, torch_threads: int, results) -> None:
    """One rank of a plain DDP training (gloo): the same net and per-rank batch on any world size."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from lightning_modules.resnet import cifar_net

    torch.set_num_threads(torch_threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = DistributedDataParallel(cifar_net(20, True, 10))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        images, labels = synthetic_batches(batch, 1)[0]
        for step in range(steps + 2):
            if step == 2:  # two warm-up steps
                dist.barrier()
                start = time.perf_counter()
            loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        dist.barrier()
        if rank == 0:
            results.put(world * batch * steps / (time.perf_counter() - start))
    finally:
        dist.destroy_process_group()


def ddp_throughput(world: int, size: Size, torch_threads: int) -> float:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(
        ddp_rank,
        args=(world, free_port(), size.steps, size.batch, torch_threads, results),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    return results.get()


def bench_ddp(size: Size) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    one = ddp_throughput(1, size, 1)
    one_all_cores = ddp_throughput(1, size, cores)
    two = ddp_throughput(2, size, max(1, cores // 2))
    return {
        "backend": "gloo",
        "batch_per_rank": size.batch,
        "cores": cores,
        "one_process_1_thread_samples_per_s": one,
        "one_process_all_cores_samples_per_s": one_all_cores,
        "two_processes_samples_per_s": two,
        "speedup_vs_one_process_1_thread": two / one,
        "speedup_vs_one_process_all_cores": two / one_all_cores,
        "target": f"speedup_vs_one_process_1_thread >= {TARGETS['ddp_speedup']}",
        "holds": two / one >= TARGETS["ddp_speedup"],
    }


# ---- tune --------------------------------------------------------------------------------------------------------


def fixed_work(steps: int, batch: int) -> float:
    """A trial's compute: `steps` ResNet-20 steps on one thread; returns its seconds."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    plain_loop(cifar_module(), synthetic_batches(batch, 2), steps)
    return time.perf_counter() - start


def tune_trial(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"compute_seconds": fixed_work(config["steps"], config["batch"])})


def tune_wall(samples: int, size: Size, storage: Path) -> float:
    from ray import tune

    start = time.perf_counter()
    tune.Tuner(
        tune.with_resources(tune_trial, {"cpu": 1}),
        param_space={"steps": size.steps, "batch": size.batch},
        tune_config=tune.TuneConfig(num_samples=samples, max_concurrent_trials=samples),
        run_config=tune.RunConfig(name=f"bench-{samples}", storage_path=str(storage), verbose=0),
    ).fit()
    return time.perf_counter() - start


def bench_tune(scratch: Path, size: Size) -> dict[str, Any]:
    import ray

    from pipelines.tune import connect

    compute = fixed_work(size.steps, size.batch)
    started_here = not ray.is_initialized()
    connect(None, os.cpu_count())
    try:
        tune_wall(1, size, scratch / "ray")  # warms Ray's worker pool, as a long-lived cluster is
        one, two = tune_wall(1, size, scratch / "ray"), tune_wall(2, size, scratch / "ray")
    finally:
        if started_here:
            ray.shutdown()
    return {
        "trial_compute_seconds": compute,
        "one_trial_wall_seconds": one,
        "two_trials_wall_seconds": two,
        "two_over_one": two / one,
        "per_trial_startup_seconds": one - compute,
        "target": f"two_over_one <= {TARGETS['tune_concurrency']}",
        "holds": two / one <= TARGETS["tune_concurrency"],
    }


# ---- pipeline ----------------------------------------------------------------------------------------------------


def dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("dvc")), *args], capture_output=True, text=True)


def yaml_in_c() -> bool:
    """Whether DVC parses YAML in C: it re-reads params.yaml for every stage's params, so this is most of a no-op."""
    from ruamel.yaml import YAML

    return "CParser" in YAML(typ="safe").Parser.__name__


def noop_repro() -> dict[str, Any]:
    """A no-op `dvc repro` where the pipeline is up to date; else `dvc repro --dry` (the same checks, nothing run)."""
    if not Path("dvc.yaml").exists():
        return {"skipped": "no dvc.yaml in the current folder"}
    status = dvc("status", "--json")
    stale = status.returncode != 0 or json.loads(status.stdout or "{}") != {}
    start = time.perf_counter()
    result = dvc("repro", "--dry") if stale else dvc("repro")
    seconds = time.perf_counter() - start
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]
    return {
        "command": "dvc repro --dry (pipeline not up to date)" if stale else "dvc repro (no-op)",
        "seconds": seconds,
        "stages": len(dvc("stage", "list", "--name-only").stdout.split()),
        "yaml_in_c": yaml_in_c(),
        "ok": result.returncode == 0,
        **({"error": errors[-1]} if errors else {}),
        "target": f"seconds <= {TARGETS['noop_repro_seconds']}",
        "holds": seconds <= TARGETS["noop_repro_seconds"],
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench_pipeline(scratch: Path, size: Size) -> dict[str, Any]:
    from datamodules.imagenet import ImageNet
    from pipelines.shard import shard_raw

    raw = scratch / "pipeline-raw"
    ImageNet.synthesize(raw, 1, classes=10, train_per_class=max(2, size.images // 10), val_per_class=1)
    megabytes = folder_bytes(raw) / 2**20
    start = time.perf_counter()
    shutil.copytree(raw, scratch / "pipeline-copy")
    copy = time.perf_counter() - start
    start = time.perf_counter()
    shard_raw(ImageNet, raw, scratch / "pipeline-shards", source={"source": "synthetic"}, shard_size=1000)
    shard = time.perf_counter() - start
    noop = noop_repro()
    return {
        "raw_megabytes": megabytes,
        "copy_megabytes_per_s": megabytes / copy,
        "shard_megabytes_per_s": megabytes / shard,
        "shard_over_copy_time": shard / copy,
        "noop_repro": noop,
        **(
            {"target": f"no-op dvc repro {noop['target']}", "holds": noop["holds"]} if "holds" in noop else {}
        ),
    }


# ---- gpu ---------------------------------------------------------------------------------------------------------


class Classifier(pl.LightningModule):
    """ResNet-50 behind the smallest LightningModule: the framework's cost on the GPU path, nothing of a paper's."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def bench_gpu(size: Size) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    from torchvision.models import resnet50

    batch, steps, warmup = 64, size.steps + 10, 10
    # Host batches, as a loader delivers them: both loops pay the same host-to-device copy each step.
    images, labels = (
        torch.randn(batch, 3, 224, 224).pin_memory(),
        torch.randint(0, 1000, (batch,)).pin_memory(),
    )

    def plain(channels_last: bool, bf16: bool) -> float:
        torch.manual_seed(0)
        net = resnet50().cuda()
        net = net.to(memory_format=torch.channels_last) if channels_last else net
        optimizer, stamps = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), []
        for _ in range(steps):
            x, y = images.to("cuda", non_blocking=True), labels.to("cuda", non_blocking=True)
            x = x.to(memory_format=torch.channels_last) if channels_last else x
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())
        return steady_rate(stamps, batch, warmup)

    def lightning(precision: str, channels_last: bool, compile: bool) -> float:
        from pipelines.config import TrainerParams
        from pipelines.train import for_speed

        torch.manual_seed(0)
        module = for_speed(Classifier(), TrainerParams(channels_last=channels_last, compile=compile))
        batches = [(images, labels)]
        return steady_rate(
            lightning_loop(module, batches, steps, accelerator="gpu", precision=precision), batch, warmup
        )

    rows = {
        "plain_fp32": plain(False, False),
        "plain_bf16_channels_last": plain(True, True),
        "lightning_fp32": lightning("32-true", False, False),
        "lightning_bf16_channels_last": lightning("bf16-mixed", True, False),
        "lightning_bf16_channels_last_compile": lightning("bf16-mixed", True, True),
    }
    return {
        "device": torch.cuda.get_device_name(),
        "batch": batch,
        "images_per_s": rows,
        "lightning_overhead_fp32": rows["plain_fp32"] / rows["lightning_fp32"] - 1,
        "lightning_overhead_bf16_channels_last": rows["plain_bf16_channels_last"]
        / rows["lightning_bf16_channels_last"]
        - 1,
    }


# ---- the verb ----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def run_bench(
    size_name: str = "default",
    sections: Iterable[str] = SECTIONS,
    report: Path = REPORT,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    size = SIZES[size_name]
    results: dict[str, Any] = {"size": size_name, "machine": machine(), "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="reprozoo-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        runners: dict[str, Callable[[], dict]] = {
            "loader": lambda: bench_loader(scratch, size),
            "framework": lambda: bench_framework(size),
            "ddp": lambda: bench_ddp(size),
            "tune": lambda: bench_tune(scratch, size),
            "pipeline": lambda: bench_pipeline(scratch, size),
            "gpu": lambda: bench_gpu(size),
        }
        for name in sections:
            progress(name)
            start = time.perf_counter()
            results[name] = {**runners[name](), "bench_seconds": time.perf_counter() - start}
    atomic_write(report, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def flat_metrics(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`loader/workers/2/per_worker_vs_decode_limit`-style names for every number (booleans as 0/1)."""
    out: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, f"{name}/"))
        elif isinstance(value, (bool, int, float)) and not isinstance(value, str):
            out[name.replace(" ", "_")] = float(value)
    return out


def log_to_mlflow(params, results: dict[str, Any], report: Path) -> str:
    from pipelines import tracking

    client = tracking.client(params)
    run = client.create_run(
        tracking.experiment_id(params, EXPERIMENT),
        run_name=f"bench-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            "git_commit": tracking.git_commit(),
            "reprozoo.kind": "bench",
            "size": results["size"],
            **{f"machine.{k}": str(v) for k, v in results["machine"].items()},
        },
    )
    metrics = flat_metrics({k: v for k, v in results.items() if k in SECTIONS})
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.log_artifact(run.info.run_id, str(report))
    client.set_terminated(run.info.run_id)
    return run.info.run_id
