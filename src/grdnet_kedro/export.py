"""Export the patch scoring graph to ONNX and score patches with ONNX Runtime.

The exported graph maps a batch of patches to patch scores and patch anomaly maps, the
same computation as the torch path of :func:`grdnet_kedro.inference.score_images`:

* reconstruction (SSIM) profile: generator, then ``1 - SSIM(X, X_hat)`` and
  ``|X - X_hat|`` averaged over channels;
* segmentation profile: generator, U-Net on ``cat[X, X_hat]``, sigmoid, mean-filter
  smoothing and the maximum of the map, with the whole patch as region of interest.

Cutting images into patches, stitching the maps, image scores and the threshold stay
outside the graph. Their settings are stored with the model as JSON metadata (ONNX
``metadata_props`` key :data:`METADATA_KEY`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from grdnet_kedro.atomic import atomic_path
from grdnet_kedro.evaluation.scoring import score_segmentation
from grdnet_kedro.inference import ScoringSettings
from grdnet_kedro.losses.ssim import effective_window_size, gaussian_window_1d
from grdnet_kedro.models.generator import reconstruct
from grdnet_kedro.training.checkpoint import metadata_differences
from grdnet_kedro.training.step import Networks

logger = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "patches"
OUTPUT_NAMES = ("patch_scores", "anomaly_maps")
BATCH_AXIS = "batch"
METADATA_KEY = "grdnet_kedro.scoring"
SSIM_SIGMA = 1.5


class OnnxExportError(RuntimeError):
    """The scoring graph could not be exported to a valid ONNX model."""


class OnnxModelMismatchError(ValueError):
    """An exported ONNX model does not match the current parameters or checkpoint."""


class PatchSSIM(nn.Module):
    """Per-patch SSIM with a fixed Gaussian window, written so that it exports to ONNX.

    It computes the same value as ``grdnet_kedro.losses.ssim.ssim(..., reduction="none")``
    (reflect padding, separable window, C1 = 0.01^2, C2 = 0.03^2 for data in [0, 1]).
    That function stacks the five statistics along the batch axis and splits them by
    the batch size, which ``torch.export`` (torch 2.13) cannot prove valid for a
    symbolic batch size. Here they are stacked along the channel axis instead, and the
    window is a constant buffer.
    """

    horizontal: Tensor
    vertical: Tensor

    def __init__(self, channels: int, patch_size: tuple[int, int], window_size: int) -> None:
        """Build the window for ``channels``-channel patches of ``patch_size`` pixels.

        Args:
            channels: Channels ``C`` of the patches.
            patch_size: Patch ``(height, width)``; a window larger than the patch is
                clamped to the largest odd size that fits, as in ``ssim_map``.
            window_size: Requested odd window side in pixels.
        """
        super().__init__()
        size = effective_window_size(window_size, patch_size[0], patch_size[1])
        window = gaussian_window_1d(
            size, SSIM_SIGMA, dtype=torch.float32, device=torch.device("cpu")
        )
        groups = 5 * channels
        self.groups = groups
        self.pad = size // 2
        self.register_buffer("horizontal", window.view(1, 1, 1, -1).repeat(groups, 1, 1, 1))
        self.register_buffer("vertical", window.view(1, 1, -1, 1).repeat(groups, 1, 1, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return the mean SSIM of each pair of patches.

        Args:
            x: Patches ``(N, C, ph, pw)``, float32 in ``[0, 1]``.
            y: Patches of the same shape and range.

        Returns:
            Float32 tensor ``(N,)`` in ``[-1, 1]``, 1 for identical patches.
        """
        stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
        if self.pad > 0:
            stacked = F.pad(stacked, (self.pad, self.pad, self.pad, self.pad), mode="reflect")
        blurred = F.conv2d(stacked, self.horizontal, groups=self.groups)
        blurred = F.conv2d(blurred, self.vertical, groups=self.groups)
        mu_x, mu_y, mean_xx, mean_yy, mean_xy = blurred.chunk(5, dim=1)

        mu_xx = mu_x * mu_x
        mu_yy = mu_y * mu_y
        mu_xy = mu_x * mu_y
        c1 = 0.01**2
        c2 = 0.03**2
        numerator = (2.0 * mu_xy + c1) * (2.0 * (mean_xy - mu_xy) + c2)
        denominator = (mu_xx + mu_yy + c1) * ((mean_xx - mu_xx) + (mean_yy - mu_yy) + c2)
        similarity = (numerator / denominator).mean(dim=1, keepdim=True)
        return similarity.mean(dim=(1, 2, 3))


class ScoringGraph(nn.Module):
    """Patch scoring of one trained category as a single module: patches in, scores out.

    Call :meth:`eval` before use, as for the networks themselves. An instance is also a
    :class:`grdnet_kedro.inference.PatchScorer` for the torch runtime.
    """

    def __init__(self, networks: Networks, settings: ScoringSettings, channels: int) -> None:
        """Wrap the generator (and the U-Net for segmentation scoring).

        Args:
            networks: Trained networks. The discriminator is not used.
            settings: Scoring settings; ``method``, ``patch_size``, ``ssim_window`` and
                ``smoothing_kernel`` are used here.
            channels: Channels ``C`` of the patches (``data.channels``).

        Raises:
            ValueError: If segmentation scoring is requested without a U-Net.
        """
        super().__init__()
        if settings.method == "segmentation" and networks.segmentator is None:
            raise ValueError(
                "segmentation scoring needs a U-Net (model.use_segmentator: true); "
                "use inference.score 'ssim' for a generator-only model"
            )
        self.method = settings.method
        self.smoothing_kernel = settings.smoothing_kernel
        self.generator = networks.generator
        self.segmentator = networks.segmentator if settings.method == "segmentation" else None
        self.ssim = (
            PatchSSIM(channels, settings.patch_size, settings.ssim_window)
            if settings.method == "ssim"
            else None
        )

    def forward(self, patches: Tensor) -> tuple[Tensor, Tensor]:
        """Score a batch of patches.

        Args:
            patches: ``(N, C, ph, pw)``, float32 in ``[0, 1]``.

        Returns:
            ``(patch_scores, anomaly_maps)``: float32 ``(N,)`` and ``(N, 1, ph, pw)``.
            Scores are in ``[0, 2]`` (SSIM) or ``[0, 1]`` (segmentation), maps in
            ``[0, 1]``; higher is more anomalous.
        """
        reconstruction = reconstruct(self.generator, patches)

        if self.ssim is None:
            if self.segmentator is None:
                raise RuntimeError("segmentation scoring needs the U-Net; it was not exported")
            logits = self.segmentator(torch.cat([patches, reconstruction], dim=1))
            scored = score_segmentation(logits, None, smoothing_kernel=self.smoothing_kernel)
            return scored.scores, scored.maps

        scores = 1.0 - self.ssim(patches, reconstruction)
        maps = (patches - reconstruction).abs().mean(dim=1, keepdim=True)
        return scores, maps


def scoring_signature(settings: ScoringSettings, channels: int) -> dict[str, Any]:
    """Return the settings the exported graph depends on, as JSON values.

    The SSIM window matters only for the SSIM score and the smoothing kernel only for the
    segmentation score, so each signature contains one of them.
    """
    signature: dict[str, Any] = {
        "channels": channels,
        "patch_size": list(settings.patch_size),
        "score_method": settings.method,
    }
    if settings.method == "segmentation":
        signature["smoothing_kernel"] = settings.smoothing_kernel
    else:
        signature["ssim_window"] = settings.ssim_window
    return signature


def checkpoint_fingerprint(checkpoint: Mapping[str, Any]) -> str:
    """Hash the generator and U-Net weights of a checkpoint (SHA-256, hex).

    The exported model stores this value, so that inference can detect an ONNX file
    exported from an older training run.
    """
    digest = hashlib.sha256()
    for network in ("generator", "segmentator"):
        state = checkpoint.get(network)
        if state is None:
            continue
        for key in sorted(state):
            tensor = state[key].detach().cpu().contiguous().reshape(-1)
            digest.update(f"{network}.{key}:{tensor.dtype}:{tensor.numel()};".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _export_dynamo(graph: ScoringGraph, example: Tensor) -> onnx.ModelProto:
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    with warnings.catch_warnings():
        # torch 2.13 warns about its own use of a deprecated pytree class during export.
        warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=FutureWarning)
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"patches": {0: batch}},
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise OnnxExportError("torch.onnx.export(dynamo=True) returned no ONNX program.")
    return program.model_proto


def _export_torchscript(graph: ScoringGraph, example: Tensor) -> onnx.ModelProto:
    axes = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with tempfile.TemporaryDirectory(prefix="grdnet-onnx-") as folder:
        path = Path(folder) / "scoring.onnx"
        torch.onnx.export(
            graph,
            (example,),
            path,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
        )
        return onnx.load_model(path)


def _has_dynamic_batch(model: onnx.ModelProto) -> bool:
    """Check that every graph input and output has a named (symbolic) first axis."""
    values = [*model.graph.input, *model.graph.output]
    return all(bool(value.type.tensor_type.shape.dim[0].dim_param) for value in values)


def build_onnx_model(
    networks: Networks,
    settings: ScoringSettings,
    channels: int,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> onnx.ModelProto:
    """Export the scoring graph of ``networks`` to an in-memory ONNX model.

    The dynamo exporter (``torch.export``) is tried first, then the TorchScript exporter
    if it fails or fixes the batch size. The networks are copied to the CPU, so the
    caller's modules keep their device, memory format and mode.

    Args:
        networks: Trained networks.
        settings: Scoring settings of the category.
        channels: Channels ``C`` of the patches.
        metadata: Extra JSON-serialisable fields stored with the model, for example the
            threshold. The scoring signature, opset, exporter and tensor names are always
            stored and replace fields of the same name.

    Returns:
        A model that passed ``onnx.checker.check_model``, with input ``patches``
        ``(batch, C, ph, pw)`` float32 and outputs ``patch_scores`` ``(batch,)`` and
        ``anomaly_maps`` ``(batch, 1, ph, pw)``.

    Raises:
        OnnxExportError: If neither exporter produces a valid model with a dynamic batch.
    """
    graph = copy.deepcopy(ScoringGraph(networks, settings, channels)).to("cpu").eval()
    for tensor in (*graph.parameters(), *graph.buffers()):
        tensor.data = tensor.data.contiguous()
    example = torch.rand(
        2, channels, *settings.patch_size, generator=torch.Generator().manual_seed(0)
    )

    model: onnx.ModelProto | None = None
    exporter = "dynamo"
    try:
        model = _export_dynamo(graph, example)
    except torch.onnx.errors.OnnxExporterError as error:
        logger.warning(
            "The dynamo ONNX exporter failed (%s); trying the TorchScript exporter", error
        )
    if model is not None and not _has_dynamic_batch(model):
        logger.warning(
            "The dynamo ONNX exporter fixed the batch size; trying the TorchScript exporter"
        )
        model = None
    if model is None:
        exporter = "torchscript"
        try:
            model = _export_torchscript(graph, example)
        except torch.onnx.errors.OnnxExporterError as error:
            raise OnnxExportError(
                f"Both ONNX exporters failed on the scoring graph; the TorchScript exporter "
                f"raised: {error}"
            ) from error
        if not _has_dynamic_batch(model):
            raise OnnxExportError(
                "Both ONNX exporters fixed the batch size of the scoring graph; the model "
                "would only accept batches of 2 patches."
            )

    fields = {
        **dict(metadata or {}),
        **scoring_signature(settings, channels),
        "opset": OPSET,
        "exporter": exporter,
        "torch_version": torch.__version__,
        "input_names": [INPUT_NAME],
        "output_names": list(OUTPUT_NAMES),
        "batch_axis": BATCH_AXIS,
    }
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(fields, sort_keys=True)})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxExportError(f"The exported scoring graph is not valid ONNX: {error}") from error
    logger.info(
        "Exported the %s scoring graph to ONNX (opset %d, %s exporter, %.2f MB)",
        settings.method,
        OPSET,
        exporter,
        model.ByteSize() / 1e6,
    )
    return model


def export_onnx(
    networks: Networks,
    settings: ScoringSettings,
    channels: int,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Export the scoring graph to the ONNX file ``path``, written atomically.

    See :func:`build_onnx_model` for the arguments, the graph and the errors.
    """
    model = build_onnx_model(networks, settings, channels, metadata=metadata)
    with atomic_path(path) as temporary:
        onnx.save_model(model, temporary)
    logger.info("Wrote the ONNX model %s", path)


def model_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """Return the metadata stored by :func:`build_onnx_model` (empty when absent)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            value: dict[str, Any] = json.loads(prop.value)
            return value
    return {}


def _providers(device: torch.device) -> list[str]:
    """Choose the ONNX Runtime execution providers for a torch device."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    logger.warning(
        "Device %s was requested but this onnxruntime build has no CUDAExecutionProvider "
        "(install onnxruntime-gpu); scoring on the CPU",
        device,
    )
    return ["CPUExecutionProvider"]


class OnnxScorer:
    """Score patches with an exported scoring graph in ONNX Runtime.

    Instances are :class:`grdnet_kedro.inference.PatchScorer` objects, so they can replace
    the torch networks in :func:`grdnet_kedro.inference.score_images`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        *,
        device: torch.device | str = "cpu",
        threads: int = 0,
    ) -> None:
        """Open an ONNX Runtime session on the model.

        Args:
            model: Path of the ``.onnx`` file, or its bytes.
            device: ``cpu`` uses the CPU provider. A CUDA device uses the CUDA provider of
                that index when this onnxruntime build has one, else the CPU with a warning.
            threads: Intra-op threads of the session; 0 keeps ONNX Runtime's default
                (one per physical core).

        Raises:
            FileNotFoundError: If ``model`` is a path that does not exist.
        """
        device = torch.device(device)
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(
                    f"ONNX model {path} not found; export it with "
                    "`kedro run --pipelines=export --namespaces=<category>`."
                )
            model = path.read_bytes()

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        providers: list[Any] = _providers(device)
        # NOTE: untested, because no test machine so far had a GPU with onnxruntime-gpu.
        if providers[0] == "CUDAExecutionProvider":
            providers[0] = ("CUDAExecutionProvider", {"device_id": device.index or 0})
        self.session = ort.InferenceSession(model, sess_options=options, providers=providers)

        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = json.loads(custom.get(METADATA_KEY, "{}"))
        self.input_shape = tuple(self.session.get_inputs()[0].shape)
        logger.info(
            "Opened the ONNX model with %s (input %s)",
            ", ".join(self.session.get_providers()),
            self.input_shape,
        )

    def __call__(self, patches: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score a batch of patches.

        Args:
            patches: ``(N, C, ph, pw)`` float in ``[0, 1]``, a tensor on any device or a
                numpy array; it is converted to a float32 CPU array.

        Returns:
            ``(patch_scores, anomaly_maps)``: float32 arrays ``(N,)`` and
            ``(N, 1, ph, pw)``, as :meth:`ScoringGraph.forward` returns.

        Raises:
            ValueError: If the shape does not match the model input.
        """
        if isinstance(patches, Tensor):
            array = patches.detach().to("cpu", torch.float32).contiguous().numpy()
        else:
            array = np.ascontiguousarray(patches, dtype=np.float32)
        expected = self.input_shape[1:]
        if array.ndim != 4 or tuple(array.shape[1:]) != expected:
            raise ValueError(
                f"The ONNX model scores patches of shape (N, {', '.join(map(str, expected))}), "
                f"got {array.shape}; cut the images with the patch size it was exported with."
            )

        scores, maps = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: array})
        return np.asarray(scores), np.asarray(maps)


def check_onnx_model(
    metadata: Mapping[str, Any],
    settings: ScoringSettings,
    channels: int,
    checkpoint: Mapping[str, Any] | None = None,
    *,
    category: str = "<category>",
) -> None:
    """Check that an exported model computes what the current settings and weights would.

    Args:
        metadata: Metadata of the model (:attr:`OnnxScorer.metadata`).
        settings: Current scoring settings.
        channels: Current ``data.channels``.
        checkpoint: Current trained checkpoint; when given, its weights must be the ones
            that were exported.
        category: Category named in the export command of the error message.

    Raises:
        OnnxModelMismatchError: Listing every differing field, when any differs.
    """
    expected = scoring_signature(settings, channels)
    if checkpoint is not None:
        expected["checkpoint_sha256"] = checkpoint_fingerprint(checkpoint)
    differences = metadata_differences(
        metadata, expected, found_label="ONNX model", expected_label="current"
    )
    if differences:
        raise OnnxModelMismatchError(
            "The ONNX model does not match the current parameters or trained model ("
            + "; ".join(differences)
            + f"). Export it again with `kedro run --pipelines=export --namespaces={category}`."
        )
