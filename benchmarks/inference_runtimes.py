"""Compare image scoring throughput of eager PyTorch and ONNX Runtime on the CPU.

Builds the networks of a parameter folder (default ``conf/base``, the quick CPU profile)
with random weights, exports the scoring graph to ONNX in memory, and times
:func:`grdnet_kedro.inference.score_images` on one batch of random uint8 images with
two patch scorers:

* ``torch eager``: the default torch path (the generator's reconstruction, then the
  scoring function), as the ``evaluate`` and ``infer`` pipelines run it;
* ``onnxruntime``: the exported model in an ONNX Runtime CPU session (graph optimisation
  level ALL). It does the same work as the torch path.

Each scorer gets ``--warmup`` untimed calls, then ``--repeats`` timed calls. Random
weights and images cost the same as trained ones, since no layer depends on the values.

Example:
    python benchmarks/inference_runtimes.py --batch 16 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import yaml

from grdnet_kedro.config import Parameters, validate_parameters
from grdnet_kedro.export import OnnxScorer, build_onnx_model
from grdnet_kedro.factory import build_networks, scoring_settings_from
from grdnet_kedro.inference import PatchScorer, ScoringSettings, score_images
from grdnet_kedro.training.device import place_networks
from grdnet_kedro.training.step import Networks

logger = logging.getLogger("benchmarks.inference_runtimes")
REPOSITORY = Path(__file__).resolve().parents[1]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conf",
        type=Path,
        default=REPOSITORY / "conf" / "base",
        help="folder of parameters*.yml files that defines the profile",
    )
    parser.add_argument("--batch", type=int, default=16, help="images per scoring call")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per scorer")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per scorer")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads of torch and ONNX Runtime; 0 keeps each library's default",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_parameters(folder: Path) -> Parameters:
    """Merge the top-level groups of every ``parameters*.yml`` in ``folder`` and validate."""
    raw: dict[str, Any] = {}
    for path in sorted(folder.glob("parameters*.yml")):
        raw.update(yaml.safe_load(path.read_text()) or {})
    return validate_parameters(raw)


def cpu_model() -> str:
    """Return the CPU model name of ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def time_scoring(
    images: np.ndarray,
    settings: ScoringSettings,
    networks: Networks | None,
    patch_scorer: PatchScorer | None,
    arguments: argparse.Namespace,
) -> float:
    """Return the images per second of ``score_images`` with one of the two back ends."""

    def score() -> None:
        score_images(
            networks, images, None, settings, device=torch.device("cpu"), patch_scorer=patch_scorer
        )

    for _ in range(arguments.warmup):
        score()
    start = time.perf_counter()
    for _ in range(arguments.repeats):
        score()
    seconds = time.perf_counter() - start
    return arguments.repeats * len(images) / seconds


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments()
    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)

    load_before = os.getloadavg()
    params = load_parameters(arguments.conf)
    torch.manual_seed(arguments.seed)
    networks = build_networks(params.model, params.data.channels)
    modules = (networks.generator, networks.discriminator, networks.segmentator)
    place_networks(modules, torch.device("cpu"), channels_last=params.runtime.channels_last)
    for module in modules:
        if module is not None:
            module.eval()
    settings = dataclasses.replace(scoring_settings_from(params), batch_size=arguments.batch)
    channels = params.data.channels

    height, width = params.data.image_hw
    images = np.random.default_rng(arguments.seed).integers(
        0, 256, size=(arguments.batch, height, width, channels), dtype=np.uint8
    )
    scorer = OnnxScorer(
        build_onnx_model(networks, settings, channels).SerializeToString(),
        threads=arguments.threads,
    )

    backends: list[tuple[str, Networks | None, PatchScorer | None]] = [
        ("torch eager", networks, None),
        ("onnxruntime", None, scorer),
    ]
    rates = {
        name: time_scoring(images, settings, nets, patch, arguments)
        for name, nets, patch in backends
    }

    print(
        f"profile {params.profile}: image {height}x{width}x{channels}, patch "
        f"{settings.patch_size}, stride {settings.stride}, score {settings.method}, "
        f"base {params.model.base_features}, stages {params.model.stages}, "
        f"batch {arguments.batch}, threads {arguments.threads or 'default'}\n"
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"python {platform.python_version()}, torch threads {torch.get_num_threads()}\n"
        f"CPU {cpu_model()}, {os.cpu_count()} logical cores, load average before the run "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    baseline = rates["torch eager"]
    for name, rate in rates.items():
        print(f"{name:26s} {rate:9.1f} images/s  x{rate / baseline:.2f}")


if __name__ == "__main__":
    main()
