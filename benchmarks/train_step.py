"""Measure training and inference throughput of the GRD-Net networks on random patches.

Builds the networks of one profile, one random perturbed batch, and times ``--steps``
calls of ``train_step`` and ``--steps`` inference passes (generator, plus the U-Net in
the full profile, under ``torch.inference_mode``), each after ``--warmup`` untimed calls.
Prints patches per second and the peak memory: ``torch.cuda.max_memory_allocated`` on
CUDA, the process's peak resident set size (``ru_maxrss``, which includes the Python
interpreter and the PyTorch libraries) on CPU. Run one configuration per process so that
the CPU figure belongs to that configuration.

Example:
    python benchmarks/train_step.py --profile full --patch 64 --base 16 --stages 2 2 2 2 \
        --batch 8 --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from grdnet_kedro.models import Discriminator, Generator, SegmentationUNet, count_parameters
from grdnet_kedro.models.generator import reconstruct
from grdnet_kedro.perturbation import PerturbationConfig, PerturbedBatch, Perturber
from grdnet_kedro.training import (
    LossWeights,
    MixedPrecision,
    Networks,
    build_optimizers,
    resolve_device,
    seed_everything,
    train_step,
)

logger = logging.getLogger("benchmarks.train_step")


@dataclass(frozen=True)
class ProfileSettings:
    """Settings of a paper profile that the command line does not set (reference values)."""

    bottleneck: Literal["conv", "dense"]
    latent_dim: int
    segmentator: bool
    weights: LossWeights
    learning_rate: float


PROFILES: dict[str, ProfileSettings] = {
    "full": ProfileSettings("conv", 256, True, LossWeights(), 1e-4),
    "sn": ProfileSettings(
        "dense",
        128,
        False,
        LossWeights(noise=3.0, contextual_base="huber", contextual_base_weight=2.0),
        1.5e-4,
    ),
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--patch", type=int, default=128, help="patch side in pixels")
    parser.add_argument("--base", type=int, default=64, help="generator base width b")
    parser.add_argument(
        "--unet-base", type=int, default=None, help="U-Net base width f (default: --base)"
    )
    parser.add_argument(
        "--stages", type=int, nargs="+", default=[2, 2, 2, 2], help="blocks per stage"
    )
    parser.add_argument("--batch", type=int, default=8, help="patches per batch")
    parser.add_argument("--channels", type=int, default=3, help="image channels (1 or 3)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps and passes")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="use the channels_last memory format"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (CUDA only; a no-op on CPU)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build_networks(arguments: argparse.Namespace) -> Networks:
    profile = PROFILES[arguments.profile]
    patch = (arguments.patch, arguments.patch)
    unet_base = arguments.unet_base or arguments.base
    return Networks(
        generator=Generator(
            in_channels=arguments.channels,
            patch_size=patch,
            base_features=arguments.base,
            stages=arguments.stages,
            downsample_position="last",
            upsample_position="last",
            bottleneck=profile.bottleneck,
            latent_dim=profile.latent_dim,
        ),
        discriminator=Discriminator(
            in_channels=arguments.channels,
            patch_size=patch,
            base_features=arguments.base,
            stages=arguments.stages,
            downsample_position="last",
        ),
        segmentator=(
            SegmentationUNet(in_channels=2 * arguments.channels, base_features=unet_base)
            if profile.segmentator
            else None
        ),
    )


def to_device(batch: PerturbedBatch, device: torch.device, channels_last: bool) -> PerturbedBatch:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def move(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(device)
        return tensor.contiguous(memory_format=memory_format) if tensor.ndim == 4 else tensor

    return PerturbedBatch(
        x=move(batch.x),
        x_perturbed=move(batch.x_perturbed),
        mask=move(batch.mask),
        beta=move(batch.beta),
        noise=move(batch.noise),
    )


def time_calls(function: Callable[[], object], count: int, device: torch.device) -> float:
    """Return the wall-clock seconds of ``count`` calls, synchronising CUDA around them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    divisor = 2**20 if platform.system() == "Darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / divisor, "process max RSS"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments()
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)

    device = resolve_device(arguments.device)
    random_generator = seed_everything(arguments.seed, deterministic=False)
    profile = PROFILES[arguments.profile]

    networks = build_networks(arguments)
    modules = [networks.generator, networks.discriminator, networks.segmentator]
    for module in modules:
        if module is not None:
            module.to(device)
            if arguments.channels_last:
                # Module.to accepts memory_format at run time; the torch stubs omit it.
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizers = build_optimizers(networks, learning_rate=profile.learning_rate)
    precision = MixedPrecision(device, enabled=arguments.bf16, dtype="bf16")

    images = torch.rand(
        arguments.batch,
        arguments.channels,
        arguments.patch,
        arguments.patch,
        generator=random_generator,
    )
    batch = Perturber(PerturbationConfig())(images, generator=random_generator)
    batch = to_device(batch, device, arguments.channels_last)
    weights = profile.weights

    def train() -> None:
        train_step(networks, optimizers, batch, weights, precision=precision)

    def infer() -> None:
        with torch.inference_mode(), precision.autocast():
            x_hat = reconstruct(networks.generator, batch.x)
            if networks.segmentator is not None:
                networks.segmentator(torch.cat([batch.x, x_hat], dim=1))

    time_calls(train, arguments.warmup, device)
    train_seconds = time_calls(train, arguments.steps, device)

    for module in modules:
        if module is not None:
            module.eval()
    time_calls(infer, arguments.warmup, device)
    infer_seconds = time_calls(infer, arguments.steps, device)

    patches = arguments.batch * arguments.steps
    memory, memory_kind = peak_memory_mib(device)
    parameters = sum(count_parameters(module) for module in modules if module is not None)
    print(
        f"profile={arguments.profile} device={device} torch={torch.__version__} "
        f"threads={torch.get_num_threads()} channels={arguments.channels} "
        f"patch={arguments.patch} base={arguments.base} stages={arguments.stages} "
        f"batch={arguments.batch} steps={arguments.steps} "
        f"channels_last={arguments.channels_last} bf16={precision.enabled} "
        f"parameters={parameters / 1e6:.2f}M"
    )
    print(
        f"train {patches / train_seconds:.2f} patches/s "
        f"({train_seconds / arguments.steps * 1000:.0f} ms/step); "
        f"inference {patches / infer_seconds:.2f} patches/s "
        f"({infer_seconds / arguments.steps * 1000:.0f} ms/batch); "
        f"peak memory {memory:.0f} MiB ({memory_kind})"
    )


if __name__ == "__main__":
    main()
