"""Project CLI commands added to ``kedro`` (``kedro validate-params --env=grdnet_2023``)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from grdnet_kedro.config import PROJECT_GROUPS, ParameterError, validate_parameters


@click.group(name="grdnet_kedro")
def cli() -> None:
    """Commands of the grdnet-kedro project."""


@cli.command("validate-params")
@click.option("--env", "-e", default=None, help="Kedro environment to check, e.g. grdnet_2023.")
@click.option(
    "--show/--no-show",
    default=False,
    help="Print the validated parameters with defaults filled in.",
)
def validate_params(env: str | None, show: bool) -> None:
    """Validate an environment's parameters against the schema without running anything."""
    project_path = Path.cwd()
    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        raw = session.load_context().params  # type: ignore[attr-defined]
    try:
        parameters = validate_parameters({k: v for k, v in raw.items() if k in PROJECT_GROUPS})
    except ParameterError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"Parameters of env '{env or 'local'}' are valid (profile '{parameters.profile}', "
        f"score '{parameters.score_method}')."
    )
    if show:
        click.echo(yaml.safe_dump(parameters.model_dump(mode="json"), sort_keys=False))
