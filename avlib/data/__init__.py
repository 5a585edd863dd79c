"""Data: the embedded synthetic dataset, manifests, PyAV decoding and the decoded cache.

Typical use::

    from avlib.data import SyntheticSpec, generate, load_manifest, DecodedCache

    spec = SyntheticSpec()                       # 10 classes x 120 clips of 3 s, 64x64 @ 8 fps
    manifest = load_manifest(generate(None, spec))   # cached under $AVLIB_HOME or ~/.cache/avlib
    cache = DecodedCache.build(manifest, "runs/cache", fps=spec.fps, frame_size=spec.frame_size,
                               sample_rate=spec.sample_rate, clip_seconds=spec.duration_s)
    cache.video[cache.select("train")]           # uint8 (N, T, H, W, 3), memory-mapped
"""
from avlib.data.cache import CACHE_FORMAT_VERSION, DecodedCache, cache_key
from avlib.data.decode import DecodeError, DecodedClip, MediaInfo, decode_clip, probe_media
from avlib.data.manifest import (
    REQUIRED_COLUMNS,
    VALID_SPLITS,
    Manifest,
    ManifestError,
    ValidationReport,
    load_manifest,
    validate_manifest,
)
from avlib.data.synthetic import (
    ClipPlan,
    SyntheticSpec,
    data_home,
    default_root,
    describe_classes,
    generate,
    plan_clip,
    spec_hash,
)

__all__ = [
    "CACHE_FORMAT_VERSION", "DecodedCache", "cache_key",
    "DecodeError", "DecodedClip", "MediaInfo", "decode_clip", "probe_media",
    "REQUIRED_COLUMNS", "VALID_SPLITS", "Manifest", "ManifestError", "ValidationReport",
    "load_manifest", "validate_manifest",
    "ClipPlan", "SyntheticSpec", "data_home", "default_root", "describe_classes", "generate",
    "plan_clip", "spec_hash",
]
