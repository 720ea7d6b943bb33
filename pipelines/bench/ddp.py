"""bench ddp: 2 gloo DDP processes against 1."""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from pipelines.bench.common import TARGETS, Size
from pipelines.bench.framework import synthetic_batches
from pipelines.processes import free_port


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
