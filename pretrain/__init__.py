"""Accelerate-driven BART denoising pre-training: config, loop, checkpoints, export, monitoring."""
