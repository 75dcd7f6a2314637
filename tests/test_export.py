"""ONNX export of the scoring graph: parity with torch, dynamic batch, metadata and errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from kedro.io import DatasetError

from grdnet_kedro import export
from grdnet_kedro.config import validate_parameters
from grdnet_kedro.datasets import BytesDataset
from grdnet_kedro.evaluation.scoring import score_reconstruction, score_segmentation
from grdnet_kedro.export import (
    OnnxModelMismatchError,
    OnnxScorer,
    PatchSSIM,
    ScoringGraph,
    check_onnx_model,
    checkpoint_fingerprint,
    export_onnx,
)
from grdnet_kedro.factory import build_networks, checkpoint_metadata, scoring_settings_from
from grdnet_kedro.inference import ScoringSettings, score_images
from grdnet_kedro.losses.ssim import ssim
from grdnet_kedro.pipelines.export.nodes import export_onnx_model
from grdnet_kedro.training.checkpoint import build_checkpoint, network_states
from grdnet_kedro.training.step import Networks

REPOSITORY = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4

FULL_PARAMETERS: dict[str, Any] = {
    "profile": "tiny_full",
    "data": {"image_size": 32, "channels": 1},
    "model": {
        "patch_size": 16,
        "patch_stride": 8,
        "base_features": 4,
        "stages": [1, 1],
        "latent_dim": 4,
        "segmentator_base_features": 4,
    },
    "inference": {"smoothing_kernel": 3, "run_acceptance_ratio": 0.25, "batch_size": 2},
    # The export node loads the networks in channels_last and must export them all the same.
    "runtime": {"channels_last": True},
}
SN_PARAMETERS: dict[str, Any] = {
    "profile": "tiny_sn",
    "data": {"image_size": 32, "channels": 1},
    "model": {
        "patch_size": 16,
        "patch_stride": 8,
        "base_features": 4,
        "stages": [1, 1],
        "latent_dim": 4,
        "bottleneck": "dense",
        "use_segmentator": False,
    },
    "inference": {"score": "ssim", "image_score": "patch_max", "batch_size": 2},
    "runtime": {"channels_last": False},
}
THRESHOLD = {
    "threshold": 0.375,
    "criterion": "f1",
    "value": 0.8,
    "n_normal": 4,
    "n_anomalous": 4,
    "source": "validation",
    "category": "widget",
    "optimistic": False,
}


def make_networks(parameters: dict[str, Any]) -> Networks:
    """Build the tiny networks with seeded weights and non-trivial BatchNorm statistics."""
    params = validate_parameters(parameters)
    torch.manual_seed(0)
    networks = build_networks(params.model, params.data.channels)
    with torch.no_grad():
        for _ in range(2):
            patches = torch.rand(4, 1, 16, 16)
            _, reconstruction, _ = networks.generator.train()(patches)
            if networks.segmentator is not None:
                networks.segmentator.train()(torch.cat([patches, reconstruction], dim=1))
    networks.generator.eval()
    if networks.segmentator is not None:
        networks.segmentator.eval()
    return networks


def make_checkpoint(networks: Networks, parameters: dict[str, Any]) -> dict[str, Any]:
    params = validate_parameters(parameters)
    return build_checkpoint(
        states=network_states(networks),
        optimizers=None,
        epoch=1,
        metadata=checkpoint_metadata(params),
    )


def reference_scores(
    networks: Networks, patches: torch.Tensor, settings: ScoringSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Score patches with the functions that the evaluate and infer pipelines use."""
    with torch.no_grad():
        _, reconstruction, _ = networks.generator(patches)
        if settings.method == "segmentation":
            assert networks.segmentator is not None
            logits = networks.segmentator(torch.cat([patches, reconstruction], dim=1))
            scored = score_segmentation(logits, None, smoothing_kernel=settings.smoothing_kernel)
        else:
            scored = score_reconstruction(patches, reconstruction, window_size=settings.ssim_window)
    return scored.scores.numpy(), scored.maps.numpy()


class Exported:
    """One profile's networks, settings, checkpoint and exported ONNX file."""

    def __init__(self, parameters: dict[str, Any], path: Path) -> None:
        self.parameters = parameters
        self.networks = make_networks(parameters)
        self.settings = scoring_settings_from(validate_parameters(parameters))
        self.checkpoint = make_checkpoint(self.networks, parameters)
        self.path = path
        self.metadata: dict[str, Any] = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """The full profile exported by the pipeline node, the SN profile by ``export_onnx``."""
    folder = tmp_path_factory.mktemp("onnx")

    full = Exported(FULL_PARAMETERS, folder / "full.onnx")
    model_bytes, full.metadata = export_onnx_model(
        full.checkpoint, THRESHOLD, FULL_PARAMETERS, category="widget"
    )
    full.path.write_bytes(model_bytes)

    sn = Exported(SN_PARAMETERS, folder / "sn" / "model.onnx")
    export_onnx(sn.networks, sn.settings, 1, sn.path, metadata={"category": "widget"})
    sn.metadata = export.model_metadata(onnx.load_model(sn.path))
    return {"full": full, "sn": sn}


@pytest.mark.parametrize(
    ("channels", "size", "window"), [(1, 16, 11), (3, 8, 11), (2, 16, 5)], ids=str
)
def test_patch_ssim_matches_loss_ssim(channels: int, size: int, window: int) -> None:
    generator = torch.Generator().manual_seed(channels)
    x = torch.rand(3, channels, size, size, generator=generator)
    y = (x + 0.2 * torch.rand(3, channels, size, size, generator=generator)).clamp(0, 1)

    expected = ssim(x, y, window_size=window, reduction="none")
    actual = PatchSSIM(channels, (size, size), window)(x, y)

    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("profile", ["full", "sn"])
def test_scoring_graph_matches_reference(exported: dict[str, Exported], profile: str) -> None:
    case = exported[profile]
    patches = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        scores, maps = ScoringGraph(case.networks, case.settings, channels=1).eval()(patches)
    expected_scores, expected_maps = reference_scores(case.networks, patches, case.settings)

    np.testing.assert_allclose(scores.numpy(), expected_scores, atol=1e-6)
    np.testing.assert_allclose(maps.numpy(), expected_maps, atol=1e-6)


def test_scoring_graph_segmentation_needs_unet(exported: dict[str, Exported]) -> None:
    with pytest.raises(ValueError, match=r"model\.use_segmentator: true"):
        ScoringGraph(exported["sn"].networks, exported["full"].settings, channels=1)


@pytest.mark.parametrize("batch", [3, 5])
@pytest.mark.parametrize("profile", ["full", "sn"])
def test_onnx_matches_torch(exported: dict[str, Exported], profile: str, batch: int) -> None:
    case = exported[profile]
    patches = torch.rand(batch, 1, 16, 16, generator=torch.Generator().manual_seed(batch))

    scores, maps = OnnxScorer(case.path)(patches)
    expected_scores, expected_maps = reference_scores(case.networks, patches, case.settings)

    assert scores.shape == (batch,)
    assert maps.shape == (batch, 1, 16, 16)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected_scores, atol=TOLERANCE)
    np.testing.assert_allclose(maps, expected_maps, atol=TOLERANCE)


@pytest.mark.parametrize("profile", ["full", "sn"])
def test_onnx_graph_has_named_batch_axis(exported: dict[str, Exported], profile: str) -> None:
    model = onnx.load_model(exported[profile].path)
    onnx.checker.check_model(model)

    patches = model.graph.input[0]
    dims = patches.type.tensor_type.shape.dim
    assert patches.name == "patches"
    assert dims[0].dim_param == "batch"
    assert [dim.dim_value for dim in dims[1:]] == [1, 16, 16]
    assert [output.name for output in model.graph.output] == ["patch_scores", "anomaly_maps"]
    assert max(opset.version for opset in model.opset_import if opset.domain == "") >= 17


def test_export_onnx_leaves_no_temporary_file(exported: dict[str, Exported]) -> None:
    folder = exported["sn"].path.parent

    assert [path.name for path in folder.iterdir()] == ["model.onnx"]


def test_export_metadata_content(exported: dict[str, Exported]) -> None:
    metadata = exported["full"].metadata

    assert metadata["category"] == "widget"
    assert metadata["profile"] == "tiny_full"
    assert metadata["threshold"] == 0.375
    assert metadata["criterion"] == "f1"
    assert metadata["threshold_source"] == "validation"
    assert metadata["patch_size"] == [16, 16]
    assert metadata["stride"] == [8, 8]
    assert metadata["image_size"] == [32, 32]
    assert metadata["channels"] == 1
    assert metadata["score_method"] == "segmentation"
    assert metadata["image_score"] == "map_max"
    assert metadata["smoothing_kernel"] == 3
    assert metadata["ssim_window"] == 11
    assert metadata["run_acceptance_ratio"] == 0.25
    assert metadata["opset"] == 18
    assert metadata["exporter"] == "dynamo"
    assert metadata["input_names"] == ["patches"]
    assert metadata["output_names"] == ["patch_scores", "anomaly_maps"]
    assert metadata["checkpoint_sha256"] == checkpoint_fingerprint(exported["full"].checkpoint)
    json.dumps(metadata, allow_nan=False)


def test_onnx_scorer_reads_embedded_metadata(exported: dict[str, Exported]) -> None:
    case = exported["full"]

    scorer = OnnxScorer(case.path.read_bytes())

    assert scorer.metadata == case.metadata
    assert scorer.input_shape == ("batch", 1, 16, 16)


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning"
)
def test_torchscript_fallback_when_dynamo_fails(
    exported: dict[str, Exported],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(*_: object) -> onnx.ModelProto:
        raise torch.onnx.errors.OnnxExporterError("simulated failure")

    monkeypatch.setattr(export, "_export_dynamo", fail)
    case = exported["sn"]
    networks = copy.deepcopy(case.networks)
    networks.generator.train()
    path = tmp_path / "fallback.onnx"

    with caplog.at_level(logging.WARNING, logger="grdnet_kedro.export"):
        export_onnx(networks, case.settings, 1, path)

    patches = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    scorer = OnnxScorer(path)
    scores, maps = scorer(patches)
    expected_scores, expected_maps = reference_scores(case.networks, patches, case.settings)
    assert scorer.metadata["exporter"] == "torchscript"
    assert "simulated failure" in caplog.text
    assert networks.generator.training
    np.testing.assert_allclose(scores, expected_scores, atol=TOLERANCE)
    np.testing.assert_allclose(maps, expected_maps, atol=TOLERANCE)


def test_export_leaves_caller_weights_unchanged(exported: dict[str, Exported]) -> None:
    networks = exported["full"].networks

    assert checkpoint_fingerprint(network_states(networks)) == checkpoint_fingerprint(
        exported["full"].checkpoint
    )


@pytest.mark.parametrize("profile", ["full", "sn"])
def test_score_images_with_onnx_matches_torch(exported: dict[str, Exported], profile: str) -> None:
    case = exported[profile]
    images = np.random.default_rng(3).integers(40, 220, size=(3, 32, 32, 1), dtype=np.uint8)
    device = torch.device("cpu")

    expected = score_images(case.networks, images, None, case.settings, device=device)
    actual = score_images(
        None, images, None, case.settings, device=device, patch_scorer=OnnxScorer(case.path)
    )

    assert actual.patch_origins == expected.patch_origins
    assert actual.patch_scores.shape == (3, 9)
    np.testing.assert_allclose(actual.patch_scores, expected.patch_scores, atol=TOLERANCE)
    np.testing.assert_allclose(actual.anomaly_maps, expected.anomaly_maps, atol=TOLERANCE)
    np.testing.assert_allclose(actual.image_scores, expected.image_scores, atol=TOLERANCE)


def test_score_images_with_scorer_rejects_rois(exported: dict[str, Exported]) -> None:
    case = exported["full"]
    images = np.zeros((1, 32, 32, 1), dtype=np.uint8)
    rois = np.ones((1, 32, 32), dtype=np.uint8)

    with pytest.raises(ValueError, match="cannot apply ROI masks"):
        score_images(
            None,
            images,
            rois,
            case.settings,
            device=torch.device("cpu"),
            patch_scorer=OnnxScorer(case.path),
        )


def test_score_images_needs_networks_or_scorer() -> None:
    settings = scoring_settings_from(validate_parameters(SN_PARAMETERS))
    images = np.zeros((1, 32, 32, 1), dtype=np.uint8)

    with pytest.raises(ValueError, match="networks or a patch_scorer"):
        score_images(None, images, None, settings, device=torch.device("cpu"))


def test_onnx_scorer_rejects_wrong_patch_shape(exported: dict[str, Exported]) -> None:
    scorer = OnnxScorer(exported["sn"].path)

    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16\), got \(2, 1, 32, 32\)"):
        scorer(np.zeros((2, 1, 32, 32), dtype=np.float32))


def test_onnx_scorer_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.onnx"

    with pytest.raises(FileNotFoundError, match=r"absent\.onnx not found") as error:
        OnnxScorer(missing)

    assert "kedro run --pipelines=export" in str(error.value)


def test_missing_onnx_model_names_export_command(tmp_path: Path) -> None:
    catalog = yaml.safe_load((REPOSITORY / "conf" / "base" / "catalog.yml").read_text())
    entry = {
        key: value.replace("{category}", "widget") if isinstance(value, str) else value
        for key, value in catalog["{category}.onnx_model"].items()
        if key != "type"
    }
    entry["filepath"] = str(tmp_path / "model.onnx")

    loader = BytesDataset(**entry).load()

    assert callable(loader)
    with pytest.raises(DatasetError, match=r"model\.onnx does not exist") as error:
        loader()
    assert "`kedro run --pipelines=export --namespaces=widget`" in str(error.value)


def test_bytes_dataset_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "blob.bin"
    BytesDataset(str(path)).save(b"\x00\x01onnx")

    assert BytesDataset(str(path)).load() == b"\x00\x01onnx"
    lazy = BytesDataset(str(path), lazy=True).load()
    assert callable(lazy)
    assert lazy() == b"\x00\x01onnx"


def test_check_onnx_model_accepts_matching_export(exported: dict[str, Exported]) -> None:
    case = exported["full"]

    check_onnx_model(case.metadata, case.settings, 1, case.checkpoint, category="widget")


def test_check_onnx_model_lists_differences(exported: dict[str, Exported]) -> None:
    case = exported["full"]
    settings = dataclasses.replace(case.settings, smoothing_kernel=5)
    retrained = copy.deepcopy(case.checkpoint)
    retrained["generator"]["decoder.head.0.bias"] += 0.1

    with pytest.raises(OnnxModelMismatchError) as error:
        check_onnx_model(case.metadata, settings, 1, retrained, category="widget")

    message = str(error.value)
    assert "smoothing_kernel: ONNX model 3, current 5" in message
    assert "checkpoint_sha256" in message
    assert "patch_size" not in message
    assert "`kedro run --pipelines=export --namespaces=widget`" in message


def test_checkpoint_fingerprint_ignores_memory_format(exported: dict[str, Exported]) -> None:
    networks = copy.deepcopy(exported["full"].networks)
    before = checkpoint_fingerprint(network_states(networks))

    networks.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    assert checkpoint_fingerprint(network_states(networks)) == before
