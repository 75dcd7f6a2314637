"""The category list, known when pipelines are registered.

One namespace per category is built from the ``data`` parameters of the run (``--params``
included) or, when pipelines are listed outside a run (``kedro viz``, ``kedro registry``),
of the environment named by ``KEDRO_ENV``:
``data.categories`` when it is a list, else the two ELPV cell types, else the category
folders found under ``data.root`` (a folder with ``train/`` and ``test/``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from kedro.config import OmegaConfigLoader

from grdnet_kedro.config import DataParams, parse_group
from grdnet_kedro.data.elpv import ELPV_CATEGORIES
from grdnet_kedro.data.mvtec import discover_categories

# Set by the parameter-validation hook once the run's context exists, so that runtime
# ``--params`` overrides of the ``data`` group shape the pipelines too.
_run_data_params: DataParams | None = None


def set_run_data_params(data: DataParams | None) -> None:
    """Record the validated ``data`` group of the current run (``None`` clears it)."""
    global _run_data_params
    _run_data_params = data


def active_env() -> str:
    """Return the Kedro environment named by ``KEDRO_ENV``, else ``local``."""
    return os.environ.get("KEDRO_ENV") or "local"


def load_data_params(project_path: Path, env: str | None = None) -> DataParams:
    """Return the ``data`` group of the current run, else read it from an environment."""
    if _run_data_params is not None and env is None:
        return _run_data_params
    with warnings.catch_warnings():
        # A second loader re-registers Kedro's OmegaConf resolvers, which only warns.
        warnings.filterwarnings("ignore", message=".*register_new_resolver.*")
        loader = OmegaConfigLoader(
            conf_source=str(project_path / "conf"),
            env=env or active_env(),
            base_env="base",
            default_run_env="local",
            merge_strategy={"parameters": "soft"},
        )
        raw = loader["parameters"].get("data", {})
    return parse_group(DataParams, raw, "data")


def resolve_categories(data: DataParams, project_path: Path) -> list[str]:
    """Return the categories the DAG is built for, in a stable order."""
    if isinstance(data.categories, list):
        if not data.categories:
            raise ValueError("data.categories is an empty list: list categories or use 'auto'")
        return list(data.categories)
    if data.source == "elpv":
        return list(ELPV_CATEGORIES)
    root = Path(data.root or "")
    if not root.is_absolute():
        root = project_path / root
    categories = discover_categories(root)
    if not categories:
        raise ValueError(
            f"data.root {root} contains no category folder (a folder with train/ and test/); "
            "point data.root at an MVTec-AD-style dataset or list data.categories"
        )
    return categories
