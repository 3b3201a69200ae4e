"""Acoustic models (MindSpore cells); see src/models/jasper.py."""
from src.models.jasper import Jasper, build_model, count_parameters

__all__ = ["Jasper", "build_model", "count_parameters"]
