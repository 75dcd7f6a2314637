"""Training loop: resume after a stop gives the same result as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grdnet_kedro.config import validate_parameters
from grdnet_kedro.factory import (
    augmentation_from,
    build_networks,
    checkpoint_metadata,
    loss_weights_from,
    perturbation_config_from,
    scoring_settings_from,
)
from grdnet_kedro.perturbation import Perturber
from grdnet_kedro.training.checkpoint import CheckpointError
from grdnet_kedro.training.device import seed_everything
from grdnet_kedro.training.loop import FitResult, LoopSettings, ValidationData, fit
from grdnet_kedro.training.step import MixedPrecision, NonFiniteLossError, build_optimizers

PARAMETERS = {
    "data": {"image_size": 16, "channels": 1},
    "model": {
        "patch_size": 16,
        "patch_stride": 16,
        "base_features": 4,
        "stages": [1, 1],
        "latent_dim": 4,
        "segmentator_base_features": 4,
    },
    "augmentation": {"rotation_degrees": 10, "hflip_probability": 0.5},
    "inference": {"smoothing_kernel": 3},
    "runtime": {"channels_last": False},
}
TIMING_COLUMNS = ["seconds", "patches_per_second"]


def make_images(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, size=(count, 16, 16, 1), dtype=np.uint8)


def train(
    epochs: int,
    checkpoint_dir: Path,
    *,
    resume: bool = True,
    run_settings: dict[str, object] | None = None,
    **overrides: object,
) -> FitResult:
    params = validate_parameters(PARAMETERS)
    generator = seed_everything(params.runtime.seed, deterministic=True)
    networks = build_networks(params.model, params.data.channels)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    validation_images = make_images(6, seed=1)
    validation = ValidationData(
        images=validation_images,
        rois=np.ones((6, 16, 16), dtype=np.uint8),
        labels=np.array([0, 0, 0, 1, 1, 1]),
    )
    validation.images[3:, 4:10, 4:10] = 255
    settings = LoopSettings(
        epochs=epochs,
        batch_size=4,
        patch_size=(16, 16),
        stride=(16, 16),
        resume=resume,
        progress=False,
        **overrides,  # type: ignore[arg-type]
    )
    return fit(
        networks,
        optimizers,
        make_images(8, seed=0),
        np.ones((8, 16, 16), dtype=np.uint8),
        validation,
        settings=settings,
        scoring=scoring_settings_from(params),
        weights=loss_weights_from(params.loss),
        perturber=Perturber(perturbation_config_from(params.perturbation)),
        augmentation=augmentation_from(params.augmentation),
        generator=generator,
        device=torch.device("cpu"),
        precision=MixedPrecision.disabled(),
        checkpoint_dir=checkpoint_dir,
        metadata=checkpoint_metadata(params),
        run_settings=run_settings,
    )


def assert_same_result(first: FitResult, second: FitResult) -> None:
    pd.testing.assert_frame_equal(
        first.history.drop(columns=TIMING_COLUMNS), second.history.drop(columns=TIMING_COLUMNS)
    )
    assert first.best_epoch == second.best_epoch
    for name in ("generator", "discriminator", "segmentator"):
        for key, value in first.best_state[name].items():
            assert torch.equal(value, second.best_state[name][key]), f"{name}.{key} differs"


def test_fit_history_has_one_row_per_epoch(tmp_path: Path) -> None:
    result = train(2, tmp_path)
    assert list(result.history["epoch"]) == [1, 2]
    assert result.history["loss_total"].notna().all()
    assert result.history["validation_auroc"].between(0, 1).all()
    assert (tmp_path / "last.pt").is_file()
    assert [epoch for epoch, _ in result.previews] == [2]


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    uninterrupted = train(3, tmp_path / "straight")

    train(1, tmp_path / "stopped")
    resumed = train(3, tmp_path / "stopped")

    assert_same_result(uninterrupted, resumed)


def test_same_seed_gives_identical_results(tmp_path: Path) -> None:
    first = train(2, tmp_path / "a")
    second = train(2, tmp_path / "b")
    assert_same_result(first, second)


def test_resume_false_starts_over(tmp_path: Path) -> None:
    train(1, tmp_path)
    result = train(1, tmp_path, resume=False)
    assert list(result.history["epoch"]) == [1]


def test_resume_rejects_other_architecture(tmp_path: Path) -> None:
    train(1, tmp_path)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    checkpoint["metadata"]["base_features"] = 64
    torch.save(checkpoint, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"Cannot resume from .*base_features"):
        train(2, tmp_path)


def test_nan_loss_names_epoch_and_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grdnet_kedro.training.loop as loop

    def broken_step(*args: object, **kwargs: object) -> dict[str, float]:
        raise NonFiniteLossError("contextual", float("nan"))

    monkeypatch.setattr(loop, "train_step", broken_step)
    with pytest.raises(NonFiniteLossError, match=r"contextual loss .* at epoch 1, step 1"):
        train(1, tmp_path)


def test_nan_loss_skipped_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grdnet_kedro.training.loop as loop

    real_step = loop.train_step
    calls = {"count": 0}

    def flaky_step(*args: object, **kwargs: object) -> dict[str, float]:
        calls["count"] += 1
        if calls["count"] == 1:
            raise NonFiniteLossError("generator", float("inf"))
        return real_step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "train_step", flaky_step)
    result = train(1, tmp_path, nonfinite_policy="skip", max_skipped_steps=2)
    assert result.history["skipped_steps"].tolist() == [1]


def test_trained_model_of_other_size_rejected(tmp_path: Path) -> None:
    from grdnet_kedro.factory import load_trained_networks
    from grdnet_kedro.training.checkpoint import build_checkpoint

    result = train(1, tmp_path)
    params = validate_parameters(PARAMETERS)
    checkpoint = build_checkpoint(
        states=result.best_state, optimizers=None, epoch=1, metadata=checkpoint_metadata(params)
    )
    wider = validate_parameters(
        {**PARAMETERS, "model": {**PARAMETERS["model"], "base_features": 8}}
    )

    networks = load_trained_networks(checkpoint, params, torch.device("cpu"))
    assert not networks.generator.training
    with pytest.raises(CheckpointError, match="base_features: checkpoint 4, parameters 8"):
        load_trained_networks(checkpoint, wider, torch.device("cpu"))


def test_resume_rejects_changed_settings(tmp_path: Path) -> None:
    train(1, tmp_path, run_settings={"optimizer": {"learning_rate": 0.001}})
    with pytest.raises(CheckpointError, match=r"optimizer: last\.pt .* parameters"):
        train(2, tmp_path, run_settings={"optimizer": {"learning_rate": 0.002}})


def test_resume_extends_finished_run(tmp_path: Path) -> None:
    settings = {"optimizer": {"learning_rate": 0.001}}
    train(1, tmp_path, run_settings=settings)
    result = train(2, tmp_path, run_settings=settings)
    assert list(result.history["epoch"]) == [1, 2]
