"""A tiny but complete configuration shared by the end-to-end tests (seconds, not minutes)."""

from avlib.config import PretrainConfig

TINY = dict(
    num_classes=3, clips_per_class=8, clip_seconds=2.0, fps=8, frame_size=32, crop_size=24,
    sample_rate=8000, n_mels=32, window_s=1.0, audio_window_s=1.5, batch_size=4, dictionary_size=8, epochs=2,
    checkpoint_every=2, num_workers=0, progress=False, warmup_steps=2,
)


def tiny_config(run_dir, **overrides) -> PretrainConfig:
    return PretrainConfig(run_dir=str(run_dir), **{**TINY, **overrides})
