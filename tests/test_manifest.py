"""Manifest loading (columns, splits, paths) and media validation."""
import shutil

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
