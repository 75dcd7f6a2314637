"""MLflow tracking that never stops the pipeline: one run per ``kedro run``.

Every call goes through :class:`RunTracker`, which logs the first MLflow failure once (with
the store's URI) and then turns itself off, so a locked or read-only store costs the user
their tracking, never their checkpoints or reports.
"""

from __future__ import annotations

import logging
import math
import subprocess  # nosec B404
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 500


def resolve_tracking_uri(uri: str, project_path: Path) -> str:
    """Make a relative ``sqlite:///file.db`` URI absolute against the project folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        database = Path(uri.removeprefix(prefix))
        if not database.is_absolute():
            return prefix + str((project_path / database).resolve())
    return uri


def flatten_parameters(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested parameter groups to ``group.key`` strings for ``mlflow.log_params``."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_parameters(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit(project_path: Path) -> str:
    """Return the current git commit (with ``-dirty`` when files changed), or ``unknown``."""
    # git is taken from PATH and gets fixed arguments only, so no user input reaches it.
    options: dict[str, Any] = {
        "cwd": project_path,
        "capture_output": True,
        "text": True,
        "check": True,
        "timeout": 10,
    }
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **options)  # nosec B603 B607
        status_command = ["git", "status", "--porcelain", "--untracked-files=no"]
        status = subprocess.run(status_command, **options)  # nosec B603
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    revision = commit.stdout.strip()
    return f"{revision}-dirty" if status.stdout.strip() else revision


class RunTracker:
    """One MLflow run; every method is a no-op once tracking failed or was disabled."""

    def __init__(self, tracking_uri: str, experiment: str, *, enabled: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.enabled = enabled
        self.run_id: str | None = None

    def _fail(self, action: str, error: Exception) -> None:
        logger.warning(
            "MLflow %s failed for the store %s (%s: %s); tracking is off for the rest of this "
            "run, the pipeline's own outputs are still written",
            action,
            self.tracking_uri,
            type(error).__name__,
            error,
        )
        self.enabled = False

    def start(self, run_name: str, tags: Mapping[str, str]) -> None:
        """Start the run (creating the experiment on first use)."""
        if not self.enabled:
            return
        try:
            import mlflow

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(run_name=run_name, tags=dict(tags))
            self.run_id = run.info.run_id
            logger.info(
                "MLflow run %s started in experiment '%s' (%s)",
                self.run_id,
                self.experiment,
                self.tracking_uri,
            )
        except Exception as error:
            self._fail("start", error)

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log flattened parameters once; values already logged with the same value are kept."""
        if not self.enabled or self.run_id is None:
            return
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Param

            client = MlflowClient(self.tracking_uri)
            items = [Param(key, value) for key, value in params.items()]
            for start in range(0, len(items), 100):
                client.log_batch(self.run_id, params=items[start : start + 100])
        except Exception as error:
            self._fail("parameter logging", error)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log finite metrics; missing (None) or non-finite values are skipped."""
        if not self.enabled or self.run_id is None:
            return
        values = {
            key: float(value)
            for key, value in metrics.items()
            if value is not None and math.isfinite(float(value))
        }
        if not values:
            return
        try:
            import mlflow

            mlflow.log_metrics(values, step=step, run_id=self.run_id)
        except Exception as error:
            self._fail("metric logging", error)

    def log_history(self, prefix: str, rows: Sequence[Mapping[str, Any]], step_key: str) -> None:
        """Log per-epoch values as metric histories with ``step`` = epoch."""
        for row in rows:
            step = int(row[step_key])
            self.log_metrics(
                {
                    f"{prefix}.{key}": value
                    for key, value in row.items()
                    if key != step_key and isinstance(value, int | float)
                },
                step=step,
            )

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy one file into the run's artifacts."""
        if not self.enabled or self.run_id is None or not path.is_file():
            return
        try:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=artifact_path, run_id=self.run_id)
        except Exception as error:
            self._fail("artifact logging", error)

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``FINISHED`` or ``FAILED``."""
        if self.run_id is None:
            return
        try:
            import mlflow

            mlflow.end_run(status=status)
            logger.info("MLflow run %s ended: %s", self.run_id, status)
        except Exception as error:
            if self.enabled:
                self._fail("end of run", error)
        self.run_id = None
