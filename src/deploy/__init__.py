"""Deployment: export (MindIR fixed/dynamic, ONNX, AIR) with a sidecar that carries what pre- and
postprocessing need, loading of checkpoints and exported graphs for inference, and the files of the
310 path (``.bin`` arrays, the input list the C++ runner reads, the utterance list postprocess reads).

Modules: ``sidecar`` (the ``<model>.json`` beside an export), ``export``, ``loading``, ``bins``.
Models are reached only through the registry (``src.models.build_model``).
"""
