"""Inference only: pixels to model input, the GAN members, calibration and the ensemble.

Importing this package does not import torch; its torch modules are imported where used.
"""
