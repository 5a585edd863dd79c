"""Manifest loading (columns, splits, paths) and media validation."""
import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from avlib.data.manifest import ManifestError, load_manifest, validate_manifest
from avlib.data.synthetic import SyntheticSpec, generate

SPEC = SyntheticSpec(num_classes=3, clips_per_class=2, duration_s=1.0, frame_size=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("man")
    return generate(root, SPEC, workers=1)


def _csv(path, text):
    path.write_text(text)
    return path


def test_load_generated(dataset):
    m = load_manifest(dataset)
    assert len(m) == 6 and m.row_numbers == [1, 2, 3, 4, 5, 6]
    assert all(p.is_absolute() and p.is_file() for p in m.paths)
    assert m.class_names == sorted(set(m.labels))
    assert m.label_index.dtype == np.int64
    assert [m.class_names[i] for i in m.label_index] == m.labels
    test = m.select("test")
    assert set(test.splits) == {"test"} and test.class_names == m.class_names
    assert list(m.column("corrupted")) == ["0"] * 6
    assert m.clip_ids[0] == "clip_00000"


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.csv")


def test_missing_columns_are_named(tmp_path):
    path = _csv(tmp_path / "m.csv", "path,label\na.mp4,x\n")
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['split'\]"):
        load_manifest(path)


def test_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no data rows"):
        load_manifest(_csv(tmp_path / "m.csv", "path,label,split\n"))


def test_bad_split_names_row_and_valid_values(tmp_path):
    path = _csv(tmp_path / "m.csv", "path,label,split\na.mp4,x,train\nb.mp4,y,training\n")
    with pytest.raises(ManifestError, match=r"row 2 \(line 3\).*'training'.*'train', 'val'"):
        load_manifest(path)


def test_duplicate_path_and_start(tmp_path):
    path = _csv(tmp_path / "m.csv", "path,label,split,start\na.mp4,x,train,0\nb.mp4,x,val,0\n"
                                    "a.mp4,x,test,5\na.mp4,y,test,0\n")
    with pytest.raises(ManifestError, match=r"row 4 .*duplicate.*first seen at row 1"):
        load_manifest(path)


def test_relative_vs_root_resolved_paths(tmp_path):
    path = _csv(tmp_path / "m.csv", "path,label,split,start,end\nsub/a.mp4,x,train,1.5,4\n"
                                    "/abs/b.mp4,y,val,,\n")
    m = load_manifest(path)
    assert m.paths[0] == (tmp_path / "sub" / "a.mp4").resolve()
    assert str(m.paths[1]) == "/abs/b.mp4"
    assert m.starts == [1.5, None] and m.ends == [4.0, None]
    other = tmp_path / "elsewhere"
    m2 = load_manifest(path, root=other)
    assert m2.paths[0] == (other / "sub" / "a.mp4").resolve()


def test_validate_raise_names_row(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset.parent, root)
    (root / "clips" / "clip_00002.mp4").unlink()
    m = load_manifest(root / "manifest.csv")
    with pytest.raises(ManifestError, match=r"row 3 \(line 4\).*clip_00002.mp4: file not found"):
        validate_manifest(m, min_duration_s=0.5)


def test_validate_skip_reports_and_keeps_the_rest(dataset, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(dataset.parent, root)
    clips = root / "clips"
    (clips / "clip_00001.mp4").unlink()
    data = (clips / "clip_00003.mp4").read_bytes()
    (clips / "clip_00003.mp4").write_bytes(data[: len(data) // 2])  # truncated
    (clips / "clip_00004.mp4").write_text("not a video")
    m = load_manifest(root / "manifest.csv")
    valid, report = validate_manifest(m, min_duration_s=0.5, on_error="skip")
    assert len(valid) == 3 and valid.row_numbers == [1, 3, 6]
    assert [p[0] for p in report.problems] == [2, 4, 5]
    assert "file not found" in report.problems[0][2]
    assert "3 ok, 3 skipped" in capsys.readouterr().out
    # too short for the requested training window
    _, short = validate_manifest(valid, min_duration_s=2.0, on_error="skip", verbose=False)
    assert short.kept == 0 and all("too short" in p[2] for p in short.problems)


# ----------------------------------------------------------------------------- every row skipped (issue 34)


def _manifest_of_missing_files(folder, count):
    """A manifest of ``count`` rows whose files do not exist (the issue's case was one row)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"clips/missing_{i}.mp4,{'ab'[i % 2]},{('train', 'val', 'test')[i % 3]}\n" for i in range(count))
    return _csv(folder / "manifest.csv", "path,label,split\n" + rows)


def test_a_manifest_whose_rows_are_all_skipped_names_them_and_the_run_writes_skipped_clips(tmp_path):
    """The error names the first rows with their resolved paths and reasons and counts the others; the
    run writes every row to skipped_clips.csv before it stops, and says where."""
    from avlib.train import pretrain
    from tiny import tiny_config

    manifest = _manifest_of_missing_files(tmp_path / "data", 7)
    run_dir = tmp_path / "run"
    with pytest.raises(ManifestError) as caught:
        pretrain(tiny_config(run_dir, dataset=str(manifest)))
    text = str(caught.value)
    assert "7 of 7 rows skipped (7x file not found)" in text
    for i in range(5):  # the first five, each with its resolved path and reason
        assert f"row {i + 1} (line {i + 2}) {tmp_path / 'data' / 'clips' / f'missing_{i}.mp4'}: file not found" in text
    assert "missing_5.mp4" not in text and "and 2 more" in text
    skipped_csv = (run_dir / "skipped_clips.csv").resolve()
    assert text.endswith(f"All 7 skipped rows with their reasons: {skipped_csv}")
    with open(skipped_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], Path(r["path"]).name, r["reason"]) for r in rows] == [
        (str(i + 1), f"missing_{i}.mp4", "file not found") for i in range(7)]
    assert caught.value.skipped_rows == [(i + 1, str(tmp_path / "data" / "clips" / f"missing_{i}.mp4"),
                                          "file not found") for i in range(7)]


def test_the_one_row_case_of_the_issue_names_the_row(tmp_path):
    """``1 of 1 rows skipped (1x file not found)`` alone named neither the row nor the path."""
    from avlib.data.dataset import open_dataset
    from tiny import tiny_config

    manifest = _manifest_of_missing_files(tmp_path / "one", 1)
    with pytest.raises(ManifestError) as caught:
        open_dataset(tiny_config(tmp_path / "run", dataset=str(manifest)), progress=False)
    assert str(caught.value).endswith(
        f"1 of 1 rows skipped (1x file not found). Skipped: row 1 (line 2) {tmp_path / 'one' / 'clips' / 'missing_0.mp4'}"
        ": file not found")
    assert not (tmp_path / "run").exists()  # the data layer writes nothing: the run (pretrain) writes the CSV


def test_a_streamed_manifest_whose_rows_are_all_skipped_carries_its_rows_for_skipped_clips(tmp_path):
    """``data_source='stream'`` validates the manifest itself (no cache): its error names the rows too and
    carries them all, which the run writes to skipped_clips.csv (the cache path's test above)."""
    from avlib.data.sources import open_clips
    from tiny import tiny_config

    manifest = _manifest_of_missing_files(tmp_path / "streamed", 3)
    with pytest.raises(ManifestError) as caught:
        open_clips(tiny_config(tmp_path / "run", dataset=str(manifest), data_source="stream"), progress=False)
    assert "3 of 3 rows skipped (3x file not found)" in str(caught.value)
    assert f"row 1 (line 2) {tmp_path / 'streamed' / 'clips' / 'missing_0.mp4'}: file not found" in str(caught.value)
    assert [row for row, _, _ in caught.value.skipped_rows] == [1, 2, 3]
