"""Encoders, projection heads and the audio-visual model."""
