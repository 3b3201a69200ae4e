"""The model registry: every family the zoo builds, by ``config.model.name``.

A family is one module (``FAMILIES``) that defines

* ``CONFIG``: its frozen config dataclass (the YAML ``model:`` section; its ``name`` field names the
  family), with ``validate() -> None`` raising ``ValueError`` that names the offending key;
* ``build(model_config, in_features: int, num_classes: int) -> nn.Cell``: the network for
  ``in_features`` feature rows (from the front end) and ``num_classes`` outputs.

The cell it returns follows ``src.models.base.ZooModel``: ``construct`` takes the inputs named by
``input_names`` and returns those named by ``output_names``; ``output_lengths`` gives the model's
output-length rule; ``export_inputs`` its export signature; ``exported_form()`` switches it to the
graph form exporters and the 310 path take.  Models read no files: the number of classes is passed in.

Family modules are imported lazily, so reading a config does not load every network.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FAMILIES: dict[str, str] = {
    "jasper": "src.models.jasper",
    "deepspeech2": "src.models.deepspeech2",
    "dscnn": "src.models.dscnn",
}

__all__ = ["FAMILIES", "build_model", "list_models", "family_module", "model_config_class", "count_parameters"]


def list_models() -> list[str]:
    """The registered family names, e.g. ``['deepspeech2', 'dscnn', 'jasper']``."""
    return sorted(FAMILIES)


def family_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(FAMILIES[name])
    except KeyError:
        raise ValueError(f"model.name {name!r} is not a model family; choose one of {list_models()}") from None


def model_config_class(name: str) -> type:
    """The config dataclass of family ``name`` (used by src.config to type the ``model:`` section)."""
    return family_module(name).CONFIG


def build_model(config: Any, num_classes: int | None = None):
    """The network of ``config.model`` for ``config.features`` inputs.  ``num_classes`` defaults to the
    config's task (labels file for ASR, keyword list for KWS): the registry resolves it, models never do."""
    if num_classes is None:
        from src.tasks import get_task  # the composition point: tasks know where classes come from
        num_classes = get_task(config).num_classes(config)
    module = family_module(config.model.name)
    return module.build(config.model, config.features.feature_dim, num_classes)


def count_parameters(model) -> tuple[int, int]:
    """(trainable parameter count, number of parameter tensors including BN moving statistics)."""
    params = list(model.get_parameters())
    return sum(int(_numel(p.shape)) for p in params if p.requires_grad), len(params)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
