"""Build one namespaced copy of a template pipeline per category."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial, update_wrapper
from typing import Any

from kedro.pipeline import Pipeline


def bind_category(func: Callable[..., Any], category: str) -> Callable[..., Any]:
    """Return ``func`` with its ``category`` argument bound, keeping its name for Kedro-Viz."""
    return update_wrapper(partial(func, category=category), func)


def per_category(
    template: Callable[[str], Pipeline], categories: Iterable[str], parameters: Iterable[str]
) -> Pipeline:
    """Instantiate ``template`` once per category under the category's namespace.

    Dataset names inside the template (``model``) become ``<category>.model``; the listed
    parameter groups stay shared by every category.
    """
    return Pipeline(
        [
            Pipeline(template(category), namespace=category, parameters=set(parameters))
            for category in categories
        ]
    )
