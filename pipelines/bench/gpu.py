"""bench gpu: ResNet-50 training images/s: a plain loop against Lightning with channels-last, bf16,
torch.compile."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pipelines.bench.common import Size, steady_rate
from pipelines.bench.framework import lightning_loop


class Classifier(pl.LightningModule):
    """ResNet-50 behind the smallest LightningModule: the framework's cost on the GPU path, nothing of a
    paper's."""

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
        from pipelines.runs import for_speed

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
