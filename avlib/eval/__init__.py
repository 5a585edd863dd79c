"""Evaluation of frozen encoders: linear and kNN probes."""
