"""Training: optimizers, per-step LR schedule, train step, callbacks, checkpoints, distributed setup.

Import the submodules directly (``from src.training.lr_schedule import lr_schedule``); this package imports
nothing itself, so the numpy-only parts load without MindSpore.
"""
