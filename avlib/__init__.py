"""avlib: audio-visual contrastive self-supervised learning, reproducibly (README.md).

For use in your own code, two functions (imported on first use, so that ``import avlib.config``
stays light):

    video_encoder, audio_encoder = avlib.load_pretrained("runs/active")   # avlib.models.export
    video, audio = avlib.embed_file("clip.mp4", video_encoder, audio_encoder)  # avlib.eval.embed
"""

__all__ = ["embed_file", "load_pretrained"]


def __getattr__(name: str):
    if name == "load_pretrained":
        from avlib.models.export import load_pretrained

        return load_pretrained
    if name == "embed_file":
        from avlib.eval.embed import embed_file

        return embed_file
    raise AttributeError(f"module 'avlib' has no attribute {name!r}")
