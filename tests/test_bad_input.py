"""Bad input through the whole pipeline (manifest -> validation -> cache -> training), as a user meets it.

A dataset with a truncated MP4, an MP4 without audio and a row pointing at a missing file: with
``on_bad_clip="skip"`` the run reports the three rows and trains on the rest; with ``"raise"`` it
stops at the first bad row with a message naming the row and the file.
"""

import csv
import shutil

import av
import numpy as np
import pytest

from avlib.data import ManifestError, SyntheticSpec, generate
from avlib.train import pretrain
from tiny import tiny_config


def _write_video_only(path, seconds=2.0, fps=8, size=32):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 8 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def damaged_dataset(tmp_path_factory):
    """A copy of a small generated dataset plus three bad rows (rows 25-27 of the manifest)."""
    spec = SyntheticSpec(num_classes=3, clips_per_class=8, duration_s=2.0, fps=8, frame_size=32, sample_rate=8000)
    source = generate(tmp_path_factory.mktemp("source"), spec, workers=1)
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(source.parent / "clips", root / "clips")
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    good = root / "clips" / rows[0]["path"].split("/")[-1]
    truncated = root / "clips" / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _write_video_only(root / "clips" / "silent.mp4")
    extra = [("clips/truncated.mp4", "truncated"), ("clips/silent.mp4", "silent"), ("clips/missing.mp4", "missing")]
    for path, clip_id in extra:
        rows.append({**rows[0], "path": path, "clip_id": clip_id, "split": "train"})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_skip_reports_each_bad_row_and_trains_on_the_rest(damaged_dataset, tmp_path, capsys):
    summary = pretrain(tiny_config(tmp_path / "run", dataset=str(damaged_dataset), max_steps=2, probe=False))
    report = capsys.readouterr().out
    assert "3 skipped" in report
    assert summary["num_clips"] == 24 and summary["steps"] == 2


def test_raise_names_the_first_bad_row_and_file(damaged_dataset, tmp_path):
    with pytest.raises(ManifestError, match=r"row 25\b.*truncated\.mp4"):
        pretrain(tiny_config(tmp_path / "run", dataset=str(damaged_dataset), on_bad_clip="raise", probe=False))


def test_missing_manifest_path_names_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="parameter dataset="):
        pretrain(tiny_config(tmp_path / "run", dataset=str(tmp_path / "nope.csv")))
