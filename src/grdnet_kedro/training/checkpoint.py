"""Save and load training checkpoints: network and optimizer states, epoch, profile.

A checkpoint is one ``torch.save`` file containing a dictionary of plain containers and
tensors, so it loads with ``torch.load(..., weights_only=True)``, which rejects arbitrary
pickled objects. The ``metadata`` entry records the architecture (channels, patch size,
widths, stages, positions, bottleneck, latent size, U-Net or not) so that a checkpoint of
another profile is rejected with a readable message instead of a ``load_state_dict``
error about missing keys.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from grdnet_kedro.atomic import atomic_path
from grdnet_kedro.training.step import Networks, Optimizers

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "grdnet_kedro.checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "epoch",
    "best_score",
    "metadata",
    "generator",
    "discriminator",
    "segmentator",
    "optimizers",
)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, malformed or of another profile."""


def _json_like(metadata: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Normalise ``metadata`` through JSON, so tuples become lists and keys strings."""
    try:
        normalised: dict[str, Any] = json.loads(json.dumps(dict(metadata), sort_keys=True))
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{where} must contain only JSON values (str, int, float, bool, None, lists and "
            f"dicts): {error}. Convert paths and tensors to str or lists first."
        ) from error
    return normalised


def network_states(networks: Networks) -> dict[str, Any]:
    """Return the networks' state dicts; ``segmentator`` is ``None`` without a U-Net."""
    return {
        "generator": networks.generator.state_dict(),
        "discriminator": networks.discriminator.state_dict(),
        "segmentator": (
            None if networks.segmentator is None else networks.segmentator.state_dict()
        ),
    }


def optimizer_states(optimizers: Optimizers) -> dict[str, Any]:
    """Return the state dicts of the optimizers, keyed like :func:`network_states`."""
    return {
        "generator": optimizers.generator.state_dict(),
        "discriminator": optimizers.discriminator.state_dict(),
        "segmentator": (
            None if optimizers.segmentator is None else optimizers.segmentator.state_dict()
        ),
    }


def build_checkpoint(
    *,
    states: Mapping[str, Any],
    optimizers: Mapping[str, Any] | None,
    epoch: int,
    metadata: Mapping[str, Any],
    best_score: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dictionary that :func:`load_checkpoint` reads.

    Args:
        states: Network state dicts as returned by :func:`network_states`.
        optimizers: Optimizer state dicts as returned by :func:`optimizer_states`, or
            ``None`` for a weights-only (inference) checkpoint.
        epoch: Number of completed epochs.
        metadata: JSON-like profile signature (channels, patch size, base width, stages,
            down/up positions, bottleneck, latent size, whether a U-Net is used) plus any
            other JSON values to keep with the weights.
        best_score: Best validation score so far, if tracked.
        extra: Further tensors and plain containers (for example the training history
            and random state needed to resume), stored under ``extra``.

    Raises:
        CheckpointError: If ``metadata`` contains values that are not JSON-like.
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "best_score": None if best_score is None else float(best_score),
        "metadata": _json_like(metadata, where="Checkpoint metadata"),
        "generator": states["generator"],
        "discriminator": states["discriminator"],
        "segmentator": states.get("segmentator"),
        "optimizers": None if optimizers is None else dict(optimizers),
        "extra": dict(extra or {}),
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    networks: Networks,
    optimizers: Optimizers | None,
    epoch: int,
    metadata: Mapping[str, Any],
    best_score: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the state of every network and optimizer to ``path`` atomically.

    Args:
        path: Target file, usually ending in ``.pt``; parent folders are created.
        networks: Generator, discriminator and optional U-Net.
        optimizers: Their optimizers, or ``None`` to save weights only (inference).
        epoch: Number of completed epochs.
        metadata: JSON-like profile signature; see :func:`build_checkpoint`.
        best_score: Best validation score so far, if tracked.
        extra: Further tensors and plain containers; see :func:`build_checkpoint`.

    Raises:
        CheckpointError: If ``metadata`` contains values that are not JSON-like.
    """
    checkpoint = build_checkpoint(
        states=network_states(networks),
        optimizers=None if optimizers is None else optimizer_states(optimizers),
        epoch=epoch,
        metadata=metadata,
        best_score=best_score,
        extra=extra,
    )
    with atomic_path(path) as temporary_path:
        torch.save(checkpoint, temporary_path)
    logger.info("Saved checkpoint of epoch %d to %s", epoch, path)


def metadata_differences(
    found: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    found_label: str = "checkpoint",
    expected_label: str = "expected",
) -> list[str]:
    """List ``key: <found_label> value, <expected_label> value`` for each differing key.

    Keys of ``expected`` that ``found`` lacks are listed as missing; extra keys in
    ``found`` are ignored.
    """
    differences = []
    for key in sorted(expected):
        if key not in found:
            differences.append(
                f"{key}: missing in {found_label}, {expected_label} {expected[key]!r}"
            )
        elif found[key] != expected[key]:
            differences.append(
                f"{key}: {found_label} {found[key]!r}, {expected_label} {expected[key]!r}"
            )
    return differences


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_metadata: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    The file is read with ``torch.load(..., weights_only=True)``.

    Args:
        path: The checkpoint file.
        expected_metadata: Profile signature of the current configuration. Every key in
            it must be present in the checkpoint's metadata with an equal value; extra
            keys in the checkpoint are ignored.
        map_location: Device the tensors are loaded onto.

    Returns:
        The checkpoint dictionary with the keys ``epoch``, ``best_score``, ``metadata``,
        ``generator``, ``discriminator``, ``segmentator`` (state dicts or ``None``) and
        ``optimizers`` (a dict of state dicts, or ``None``).

    Raises:
        CheckpointError: If the file is missing, truncated or corrupt, is not a checkpoint
            of this project, or was trained with another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint file {path} not found. Train the model first or fix the path."
        )

    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    # A damaged file can make the unpickler raise almost any built-in error (zip and
    # unpickling errors, EOFError, and IndexError for random bytes with torch 2.13), so
    # every Exception is reported as an unreadable file.
    except Exception as error:
        raise CheckpointError(
            f"Checkpoint file {path} could not be read: it is truncated or corrupt, or it "
            f"contains objects other than tensors and plain containers ({error}). Delete it "
            "and retrain, or point to an intact checkpoint."
        ) from error

    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"Checkpoint file {path} contains a {type(checkpoint).__name__}, not a checkpoint "
            "dictionary. Write checkpoints with save_checkpoint."
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"Checkpoint file {path} is not a grdnet_kedro checkpoint (missing keys: "
            f"{', '.join(missing) or 'none'}; format: {checkpoint.get('format')!r}). A bare "
            "state dict cannot be resumed; write checkpoints with save_checkpoint."
        )
    if checkpoint["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"Checkpoint file {path} has format version {checkpoint['version']!r}, but this "
            f"code reads version {CHECKPOINT_VERSION}. Retrain with this version."
        )

    if expected_metadata is not None:
        expected = _json_like(expected_metadata, where="expected_metadata")
        differences = metadata_differences(checkpoint["metadata"], expected)
        if differences:
            raise CheckpointError(
                f"Checkpoint file {path} was trained with a different architecture: "
                + "; ".join(differences)
                + ". Retrain or point to the checkpoint of this profile."
            )

    checkpoint.setdefault("extra", {})
    logger.info("Loaded checkpoint of epoch %d from %s", checkpoint["epoch"], path)
    return checkpoint


def restore(
    networks: Networks, optimizers: Optimizers | None, checkpoint: Mapping[str, Any]
) -> int:
    """Load the states of a checkpoint into the networks and, optionally, optimizers.

    Args:
        networks: Networks built with the checkpoint's architecture.
        optimizers: Optimizers to resume, or ``None`` for inference.
        checkpoint: A dictionary returned by :func:`load_checkpoint`.

    Returns:
        The number of completed epochs stored in the checkpoint.

    Raises:
        CheckpointError: If the U-Net presence differs, a state dict does not fit its
            network, or optimizer states are requested but were not saved.
    """
    if (networks.segmentator is None) != (checkpoint["segmentator"] is None):
        raise CheckpointError(
            f"The checkpoint {'has' if checkpoint['segmentator'] is not None else 'has no'} "
            f"segmentation U-Net but the current model "
            f"{'has' if networks.segmentator is not None else 'has no'} U-Net. Use a "
            "checkpoint of this profile or change use_segmentator."
        )

    modules = {"generator": networks.generator, "discriminator": networks.discriminator}
    if networks.segmentator is not None:
        modules["segmentator"] = networks.segmentator
    for name, module in modules.items():
        try:
            module.load_state_dict(checkpoint[name])
        except RuntimeError as error:
            raise CheckpointError(
                f"The checkpoint's {name} weights do not fit the {name} network: {error}. "
                "Retrain or point to the checkpoint of this profile."
            ) from error

    if optimizers is not None:
        states = checkpoint["optimizers"]
        if states is None:
            raise CheckpointError(
                "The checkpoint contains no optimizer states because it was saved for inference. "
                "Restore with optimizers=None or resume from a training checkpoint."
            )
        optimizers.generator.load_state_dict(states["generator"])
        optimizers.discriminator.load_state_dict(states["discriminator"])
        if optimizers.segmentator is not None and states["segmentator"] is not None:
            optimizers.segmentator.load_state_dict(states["segmentator"])

    epoch = int(checkpoint["epoch"])
    restored = "networks and optimizers" if optimizers is not None else "networks"
    logger.info("Restored %s at epoch %d", restored, epoch)
    return epoch
