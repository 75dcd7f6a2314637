"""Tests of checkpoint saving, loading, validation and restoring."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from grdnet_kedro.models import Discriminator, Generator, SegmentationUNet
from grdnet_kedro.perturbation import PerturbationConfig, Perturber
from grdnet_kedro.training import (
    CheckpointError,
    LossWeights,
    Networks,
    build_optimizers,
    load_checkpoint,
    restore,
    save_checkpoint,
    train_step,
)
from grdnet_kedro.training import checkpoint as checkpoint_module

PATCH = 16
METADATA = {
    "channels": 1,
    "patch_size": (PATCH, PATCH),
    "base_features": 4,
    "stages": (1, 1),
    "downsample_position": "last",
    "upsample_position": "last",
    "bottleneck": "conv",
    "latent_dim": 8,
    "use_segmentator": True,
    "category": "mono",
}


def make_networks(*, segmentator: bool = True, base_features: int = 4) -> Networks:
    return Networks(
        generator=Generator(
            in_channels=1,
            patch_size=(PATCH, PATCH),
            base_features=base_features,
            stages=[1, 1],
            downsample_position="last",
            upsample_position="last",
            bottleneck="conv",
            latent_dim=8,
        ),
        discriminator=Discriminator(
            in_channels=1,
            patch_size=(PATCH, PATCH),
            base_features=base_features,
            stages=[1, 1],
            downsample_position="last",
        ),
        segmentator=SegmentationUNet(in_channels=2, base_features=4) if segmentator else None,
    )


@pytest.fixture
def trained(tmp_path: Path):
    """Networks and optimizers after one training step, saved to a checkpoint file."""
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, PATCH, PATCH, generator=generator)
    batch = Perturber(PerturbationConfig(probability=1.0, perlin_min_area=4))(
        x, generator=generator
    )
    train_step(networks, optimizers, batch, LossWeights())

    path = tmp_path / "models" / "mono.pt"
    save_checkpoint(
        path, networks=networks, optimizers=optimizers, epoch=7, metadata=METADATA, best_score=0.9
    )
    return networks, optimizers, path


def assert_same_state(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_round_trip_restores_networks(trained):
    networks, _, path = trained
    fresh = make_networks()

    epoch = restore(fresh, None, load_checkpoint(path))

    assert epoch == 7
    assert_same_state(networks.generator.state_dict(), fresh.generator.state_dict())
    assert_same_state(networks.discriminator.state_dict(), fresh.discriminator.state_dict())
    assert networks.segmentator is not None and fresh.segmentator is not None
    assert_same_state(networks.segmentator.state_dict(), fresh.segmentator.state_dict())


def test_round_trip_restores_optimizers(trained):
    _, optimizers, path = trained
    fresh = make_networks()
    fresh_optimizers = build_optimizers(fresh, learning_rate=0.5)

    restore(fresh, fresh_optimizers, load_checkpoint(path))

    saved = optimizers.generator.state_dict()
    loaded = fresh_optimizers.generator.state_dict()
    assert loaded["param_groups"][0]["lr"] == 1e-3
    assert torch.equal(saved["state"][0]["exp_avg"], loaded["state"][0]["exp_avg"])
    assert fresh_optimizers.segmentator is not None
    assert fresh_optimizers.segmentator.state_dict()["param_groups"][0]["lr"] == 1e-3


def test_round_trip_keeps_epoch_score_and_metadata(trained):
    _, _, path = trained

    checkpoint = load_checkpoint(path)

    assert checkpoint["epoch"] == 7
    assert checkpoint["best_score"] == 0.9
    # Tuples are stored as JSON lists.
    assert checkpoint["metadata"]["patch_size"] == [PATCH, PATCH]
    assert checkpoint["metadata"]["category"] == "mono"


def test_load_accepts_matching_expected_metadata(trained):
    _, _, path = trained
    expected = {"patch_size": [PATCH, PATCH], "stages": (1, 1), "use_segmentator": True}

    checkpoint = load_checkpoint(path, expected_metadata=expected)

    assert checkpoint["epoch"] == 7


def test_save_leaves_no_temporary_file(trained):
    _, _, path = trained

    assert sorted(p.name for p in path.parent.iterdir()) == ["mono.pt"]


def test_save_rejects_non_json_metadata(tmp_path):
    networks = make_networks(segmentator=False)

    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(
            tmp_path / "x.pt",
            networks=networks,
            optimizers=None,
            epoch=0,
            metadata={"root": Path("/data")},
        )


def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "absent.pt"

    with pytest.raises(CheckpointError, match=r"absent\.pt not found"):
        load_checkpoint(path)


def test_load_truncated_file_names_it(trained):
    _, _, path = trained
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CheckpointError, match=r"mono\.pt could not be read"):
        load_checkpoint(path)


def test_load_garbage_file_names_it(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")

    with pytest.raises(CheckpointError, match=r"garbage\.pt could not be read"):
        load_checkpoint(path)


def test_load_rejects_pickled_objects(tmp_path):
    # weights_only=True refuses arbitrary classes, so a pickled Path cannot be loaded.
    path = tmp_path / "pickled.pt"
    torch.save({"format": Path("/etc")}, path)

    with pytest.raises(CheckpointError, match=r"pickled\.pt could not be read"):
        load_checkpoint(path)


def test_load_uses_weights_only():
    source = Path(checkpoint_module.__file__).read_text(encoding="utf-8")

    assert "weights_only=True" in source
    assert "pickle.load(" not in source


def test_load_bare_tensor_names_it(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)

    with pytest.raises(CheckpointError, match=r"tensor\.pt contains a Tensor"):
        load_checkpoint(path)


def test_load_plain_state_dict_names_missing_keys(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(make_networks().generator.state_dict(), path)

    with pytest.raises(
        CheckpointError, match=r"state\.pt is not a grdnet_kedro checkpoint"
    ) as raised:
        load_checkpoint(path)

    assert "missing keys: format, version, epoch" in str(raised.value)


def test_load_other_profile_lists_differences(trained):
    _, _, path = trained
    expected = {**METADATA, "base_features": 64, "stages": [2, 2, 2, 2]}

    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, expected_metadata=expected)

    message = str(raised.value)
    assert "mono.pt" in message
    assert "base_features: checkpoint 4, expected 64" in message
    assert "stages: checkpoint [1, 1], expected [2, 2, 2, 2]" in message
    assert "Retrain or point to the checkpoint of this profile" in message


def test_load_reports_metadata_key_missing_in_checkpoint(trained):
    _, _, path = trained

    with pytest.raises(CheckpointError, match="image_size: missing in checkpoint"):
        load_checkpoint(path, expected_metadata={"image_size": 256})


def test_load_rejects_other_format_version(trained, tmp_path):
    _, _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["version"] = 99
    other = tmp_path / "future.pt"
    torch.save(checkpoint, other)

    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(other)


def test_restore_rejects_missing_segmentator(trained):
    _, _, path = trained

    with pytest.raises(CheckpointError, match="has segmentation U-Net"):
        restore(make_networks(segmentator=False), None, load_checkpoint(path))


def test_restore_rejects_other_widths(trained):
    _, _, path = trained

    with pytest.raises(CheckpointError, match="generator weights do not fit"):
        restore(make_networks(base_features=8), None, load_checkpoint(path))


def test_restore_weights_only_checkpoint_into_optimizers(tmp_path):
    networks = make_networks(segmentator=False)
    path = tmp_path / "inference.pt"
    save_checkpoint(path, networks=networks, optimizers=None, epoch=1, metadata={})
    checkpoint = load_checkpoint(path)

    assert restore(make_networks(segmentator=False), None, checkpoint) == 1
    with pytest.raises(CheckpointError, match="no optimizer states"):
        restore(networks, build_optimizers(networks, learning_rate=1e-3), checkpoint)


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)
    assert pickle.loads(pickle.dumps(CheckpointError("x"))).args == ("x",)
