"""WebDataset shards (avlib.data.shards): the index, the tars, random reads, re-encoding, refusals."""
import contextlib
import csv
import io
import json
import shutil
import tarfile

import av
import numpy as np
import pytest

from avlib.data import shards
from avlib.data.decode import decode_clip, probe_media
from avlib.data.manifest import ManifestError, load_manifest, skip_reasons, validate_manifest
from avlib.data.synthetic import SyntheticSpec, generate

SPEC = SyntheticSpec(num_classes=2, clips_per_class=5, duration_s=2.0, frame_size=32,
                     split_fractions=(0.6, 0.2, 0.2))  # 6 train, 2 val, 2 test clips
PER_SHARD = 3
COLUMNS = ["path", "label", "split", "clip_id", "start", "end", "group"]


def _write_clip(path, *, size=(48, 32), fps=10, seconds=2.0, audio=True, sr=22050, container="mp4",
                audio_codec="aac", layout="stereo", video_codec="libx264", click_s=0.5, grey_step=10):
    """Frame k is uniformly grey ``grey_step`` x k; the audio is silent but for a click at ``click_s``.  H.264 has one
    keyframe (the first: x264's default keyint is 250 frames)."""
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        if audio:
            sound = out.add_stream(audio_codec, rate=sr, layout=layout)
        for k in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), grey_step * k, np.uint8), format="rgb24")
            frame.pts = k
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio:
            x = np.zeros((len(av.AudioLayout(layout).channels), int(seconds * sr)), np.float32)  # (C, S)
            click = int(click_s * sr)
            x[:, click: click + 50] = 0.8
            block = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
            block.sample_rate, block.pts = sr, 0
            out.mux(sound.encode(block))
            out.mux(sound.encode())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of 15 rows: 10 generated clips, a 3:2 stereo clip, a start/end span of clip 0,
    and three broken rows (a missing file, a truncated MP4, a file without audio)."""
    root = tmp_path_factory.mktemp("shards")
    generated = load_manifest(generate(root / "gen", SPEC, workers=1))
    rows = [{"path": f"gen/{r['path']}", "label": r["label"], "split": r["split"], "clip_id": r["clip_id"],
             "start": "", "end": "", "group": f"g{n % 3}"} for n, r in enumerate(generated.rows)]
    label = rows[0]["label"]
    _write_clip(root / "wide.mp4")
    _write_clip(root / "silent.mp4", audio=False)
    data = (root / "gen/clips/clip_00001.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    rows += [{"path": "wide.mp4", "label": label, "split": "train", "clip_id": "wide", "start": "", "end": "",
              "group": ""},
             {"path": rows[0]["path"], "label": label, "split": "train", "clip_id": "span", "start": "0.25",
              "end": "1.9", "group": ""},
             {"path": "missing.mp4", "label": label, "split": "train", "clip_id": "m", "start": "", "end": "",
              "group": ""},
             {"path": "truncated.mp4", "label": label, "split": "test", "clip_id": "t", "start": "", "end": "",
              "group": ""},
             {"path": "silent.mp4", "label": label, "split": "val", "clip_id": "s", "start": "", "end": "",
              "group": ""}]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    out = root / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        index = shards.write_shards(root / "manifest.csv", out, samples_per_shard=PER_SHARD, progress=False)
    return {"root": root, "manifest": root / "manifest.csv", "out": out, "index": index,
            "printed": printed.getvalue()}


def test_counts_shard_sizes_and_every_kept_row_exactly_once(corpus):
    index = shards.read_index(corpus["out"])
    assert index == corpus["index"]  # what write_shards returned is what it wrote
    assert index["format"] == shards.SHARD_FORMAT and index["version"] == shards.SHARD_FORMAT_VERSION
    assert index["counts"] == {"train": 8, "val": 2, "test": 2}
    assert [(s["name"], s["samples"]) for s in index["shards"]] == [
        ("train-000000.tar", 3), ("train-000001.tar", 3), ("train-000002.tar", 2),
        ("val-000000.tar", 2), ("test-000000.tar", 2)]
    assert sorted(p.name for p in corpus["out"].iterdir()) == sorted(
        [s["name"] for s in index["shards"]] + ["index.json"])  # no temporary file left behind
    for shard in index["shards"]:
        assert shard["bytes"] == (corpus["out"] / shard["name"]).stat().st_size
    samples = index["samples"]
    assert [s["key"] for s in samples] == [f"{i:08d}" for i in range(len(samples))]
    assert [s["shard"] for s in samples] == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]  # tar order, shards in order
    assert all(index["shards"][s["shard"]]["split"] == s["split"] for s in samples)
    manifest = load_manifest(corpus["manifest"])
    kept_rows = [n for n in manifest.row_numbers if n not in {r for r, _, _ in index["skipped"]}]
    assert sorted(s["row"] for s in samples) == kept_rows  # each kept row once, no other
    assert index["class_names"] == manifest.class_names and index["columns"] == COLUMNS
    for s in samples:
        row = manifest.rows[s["row"] - 1]
        assert (s["label"], s["split"], s["group"]) == (row["label"], row["split"], row["group"])
        assert manifest.class_names[s["label_index"]] == s["label"]
    assert index["encoding"] == {"mode": "copy"}
    assert index["bytes_in"] == index["bytes_out"] == sum(s["size"] for s in samples)


def test_skipped_rows_and_the_summary_line_are_validate_manifests(corpus):
    manifest = load_manifest(corpus["manifest"])
    _, report = validate_manifest(manifest, min_duration_s=1.5, on_error="skip", verbose=False)
    assert corpus["index"]["skipped"] == [list(p) for p in report.problems]
    assert [p[0] for p in report.problems] == [13, 14, 15]
    reasons = skip_reasons(report.problems)
    assert "file not found" in reasons and "truncated" in reasons and "no audio stream" in reasons
    assert corpus["printed"].strip() == f"dataset: 15 manifest rows, 12 clips used, 3 skipped{reasons}"


def test_bytes_at_the_recorded_offsets_are_the_source_files(corpus):
    index, out = corpus["index"], corpus["out"]
    manifest = load_manifest(corpus["manifest"])
    for i, sample in enumerate(index["samples"]):
        source = manifest.paths[sample["row"] - 1].read_bytes()
        assert shards.read_sample_bytes(out, index, i) == source
    moved = json.loads(json.dumps(index))
    moved["samples"][0]["offset"] += 1  # a wrong offset must not pass for the file
    assert shards.read_sample_bytes(out, moved, 0) != manifest.paths[index["samples"][0]["row"] - 1].read_bytes()
    span = next(s for s in index["samples"] if s["clip_id"] == "span")
    assert (span["start_s"], span["end_s"]) == (0.25, 1.9)  # copy mode: the whole file, the span recorded
    assert span["duration_s"] == pytest.approx(1.65, abs=1e-6)
    whole = next(s for s in index["samples"] if s["clip_id"] == "wide")
    assert (whole["start_s"], whole["end_s"]) == (0.0, None) and whole["duration_s"] == pytest.approx(2.0, abs=0.05)
    with pytest.raises(IndexError, match=r"sample 12: expected an int in \[0, 12\)"):
        shards.read_sample_bytes(out, index, 12)


def test_a_shard_reads_with_webdataset_and_matches_the_index(corpus):
    import webdataset

    index, out = corpus["index"], corpus["out"]
    manifest = load_manifest(corpus["manifest"])
    expected = [s for s in index["samples"] if s["shard"] == 1]
    read = list(webdataset.WebDataset(str(out / "train-000001.tar"), shardshuffle=False))
    assert [item["__key__"] for item in read] == [s["key"] for s in expected]
    for item, sample in zip(read, expected):
        meta = json.loads(item["json"])
        assert {k: meta[k] for k in meta if k != "columns"} == {
            k: sample[k] for k in ("clip_id", "label", "label_index", "split", "group", "duration_s", "start_s",
                                   "end_s", "row")}
        assert meta["columns"] == manifest.rows[sample["row"] - 1]
        assert item["mp4"] == shards.read_sample_bytes(out, index, int(sample["key"]))


def test_the_permutation_is_seeded_and_parallel_validation_writes_the_same_shards(corpus, tmp_path):
    index = corpus["index"]
    with contextlib.redirect_stdout(io.StringIO()):
        parallel = shards.write_shards(corpus["manifest"], tmp_path / "w2", samples_per_shard=PER_SHARD,
                                       workers=2, progress=False)
        reseeded = shards.write_shards(corpus["manifest"], tmp_path / "s1", samples_per_shard=PER_SHARD,
                                       seed=1, progress=False)
    assert parallel["samples"] == index["samples"] and parallel["skipped"] == index["skipped"]
    for shard in index["shards"]:  # fixed member times: byte-identical tars
        assert (tmp_path / "w2" / shard["name"]).read_bytes() == (corpus["out"] / shard["name"]).read_bytes()
    train = [s["row"] for s in index["samples"] if s["split"] == "train"]
    train_seed1 = [s["row"] for s in reseeded["samples"] if s["split"] == "train"]
    assert sorted(train) == sorted(train_seed1) and train != train_seed1
    assert train != sorted(train)  # permuted, not in manifest order


def test_reencode_writes_the_span_at_the_short_side_fps_and_keyframe_interval(corpus, tmp_path):
    manifest = load_manifest(corpus["manifest"])
    picked = manifest.subset([manifest.clip_ids.index(c) for c in ("wide", "span", "s")])
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        index = shards.write_shards(picked, tmp_path / "re", progress=False, workers=2,  # encoded in a pool
                                    reencode={"short_side": 16, "fps": 5, "keyframe_interval_s": 0.4})
    assert printed.getvalue().startswith("dataset: 3 manifest rows, 2 clips used, 1 skipped (1x no audio stream)")
    assert index["encoding"] == {"mode": "reencode", "short_side": 16, "fps": 5.0, "keyframe_interval_s": 0.4,
                                 "crf": 23}
    assert index["bytes_in"] == sum(picked.paths[i].stat().st_size for i in (0, 1))
    assert index["bytes_out"] == sum(s["size"] for s in index["samples"])
    by_id = {s["clip_id"]: i for i, s in enumerate(index["samples"])}
    for clip_id, size, seconds in (("wide", (24, 16), 2.0), ("span", (16, 16), 1.6)):
        sample = index["samples"][by_id[clip_id]]
        assert (sample["start_s"], sample["end_s"], sample["duration_s"]) == (0.0, None, pytest.approx(seconds))
        path = tmp_path / f"{clip_id}.mp4"
        path.write_bytes(shards.read_sample_bytes(tmp_path / "re", index, by_id[clip_id]))
        info = probe_media(path)
        assert (info.width, info.height, info.fps) == (*size, 5.0)
        assert info.duration == pytest.approx(seconds, abs=0.01)
        with av.open(str(path)) as container:
            keys = [p.is_keyframe for p in container.demux(container.streams.video[0]) if p.size]
            audio = container.streams.audio[0].codec_context
            rate, channels = audio.sample_rate, len(audio.layout.channels)
        assert keys == [k % 2 == 0 for k in range(len(keys))] and len(keys) == round(seconds * 5)
        assert (rate, channels) == ((22050, 2) if clip_id == "wide" else (SPEC.sample_rate, 1))  # as the source
    # content and timing: output frame k (time k/5) is source frame 2k, grey level 20k; click at 0.5 s
    clip = decode_clip(tmp_path / "wide.mp4", fps=5, frame_size=16, sample_rate=16000)
    np.testing.assert_allclose(clip.frames.mean((1, 2, 3)), 20 * np.arange(10), atol=3)
    assert abs(np.argmax(np.abs(clip.audio) > 0.2) / 16000 - 0.5) < 0.005
    # the span [0.25, 1.9) of clip 0 re-encoded: it starts 0.25 s into the source, to the sample
    cut = decode_clip(tmp_path / "span.mp4", fps=5, frame_size=16, sample_rate=16000)
    source = decode_clip(picked.paths[1], fps=5, frame_size=16, sample_rate=16000)
    assert np.abs(cut.frames.astype(int) - source.frames[1:1 + len(cut.frames)]).mean() < 8  # frame k at 0.25+k/5 s
    n, at = len(cut.audio) - 100, int(0.25 * 16000)
    lags = np.arange(-40, 41)  # (L,) audio samples at 16 kHz; the tonal audio repeats beyond these
    match = [np.corrcoef(cut.audio[:n], source.audio[at + lag:at + lag + n])[0, 1] for lag in lags]
    assert abs(lags[int(np.argmax(match))]) <= 1 and max(match) > 0.99


def test_copy_mode_skips_a_file_that_is_not_mp4_and_re_encoding_takes_it(tmp_path):
    _write_clip(tmp_path / "clip.mkv", container="matroska")
    (tmp_path / "m.csv").write_text("path,label,split\nclip.mkv,a,train\n")
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\).*clip.mkv: not an MP4 container \(matroska,webm\)"):
        shards.write_shards(tmp_path / "m.csv", tmp_path / "copy", on_error="raise", progress=False)
    (tmp_path / "m.csv").write_text("path,label,split\nclip.mkv,a,train\n" + "".join(
        f"clip{i}.mkv,a,train\n" for i in range(2)))  # two more rows, missing: nothing is left
    nothing_left = r"3 of 3 rows skipped \(2x file not found, 1x not an MP4 container"
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(ManifestError, match=nothing_left):
        shards.write_shards(tmp_path / "m.csv", tmp_path / "copy", progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        index = shards.write_shards(tmp_path / "m.csv", tmp_path / "re", progress=False,
                                    reencode={"short_side": 16, "fps": 10, "keyframe_interval_s": 1})
    assert [s["row"] for s in index["samples"]] == [1]
    assert [why for _, _, why in index["skipped"]] == ["file not found"] * 2


def test_pcm_audio_with_an_unordered_layout_is_re_encoded(tmp_path):
    """AVI (like WAV and Matroska) PCM without a channel mask reads as "1 channels", a layout the AAC
    encoder refused: such a row was skipped as "re-encode failed" (found by a sweep over media of other kinds)."""
    _write_clip(tmp_path / "clip.avi", container="avi", audio_codec="pcm_s16le", layout="mono", sr=16000)
    with av.open(str(tmp_path / "clip.avi")) as source:
        assert source.streams.audio[0].codec_context.layout.name == "1 channels"  # the quirk itself
    (tmp_path / "m.csv").write_text("path,label,split\nclip.avi,a,train\n")
    with contextlib.redirect_stdout(io.StringIO()):
        index = shards.write_shards(tmp_path / "m.csv", tmp_path / "re", progress=False, on_error="raise",
                                    reencode={"short_side": 16, "fps": 10, "keyframe_interval_s": 1})
    assert index["skipped"] == [] and [s["row"] for s in index["samples"]] == [1]
    (tmp_path / "out.mp4").write_bytes(shards.read_sample_bytes(tmp_path / "re", index, 0))
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.audio[0].codec_context.layout.name == "mono"
    clip = decode_clip(tmp_path / "out.mp4", fps=10, frame_size=16, sample_rate=16000)
    assert abs(np.argmax(np.abs(clip.audio) > 0.2) / 16000 - 0.5) < 0.005  # the click, on time


@pytest.mark.parametrize("kind", [("mpegts", "libx264", "aac", "ts"), ("mpeg", "mpeg2video", "mp2", "mpg")],
                         ids=["mpegts_one_keyframe", "mpeg_ps"])
def test_a_span_of_an_mpeg_ts_or_ps_is_re_encoded_from_its_start(tmp_path, kind):
    """MPEG-TS/PS seek by timestamps: in a TS whose only keyframe is its first frame, a seek to the span's
    start decoded nothing ("re-encode failed: no video frame decoded").  Now the span's frames and its
    click are where they were in the source."""
    container, video_codec, audio_codec, ext = kind
    _write_clip(tmp_path / f"clip.{ext}", container=container, video_codec=video_codec, audio_codec=audio_codec,
                sr=48000, click_s=1.2, fps=25, grey_step=3, seconds=3.0)  # MPEG-2 has no 10 fps
    (tmp_path / "m.csv").write_text(f"path,label,split,start,end\nclip.{ext},a,train,0.8,1.8\n")
    with contextlib.redirect_stdout(io.StringIO()):
        index = shards.write_shards(tmp_path / "m.csv", tmp_path / "re", progress=False, on_error="raise",
                                    min_duration_s=1.0, reencode={"short_side": 16, "fps": 5, "keyframe_interval_s": 1})
    (tmp_path / "out.mp4").write_bytes(shards.read_sample_bytes(tmp_path / "re", index, 0))
    with av.open(str(tmp_path / f"clip.{ext}")) as source:
        start = float(source.streams.video[0].start_time * source.streams.video[0].time_base)
    clip = decode_clip(tmp_path / "out.mp4", fps=5, frame_size=16, sample_rate=16000)
    # output frame k is time 0.8 + k / 5 of the container, i.e. source frame floor((0.8 + k / 5 - start) x 25)
    expected = [3 * int(np.floor((0.8 + k / 5 - start) * 25 + 1e-6)) for k in range(5)]
    np.testing.assert_allclose(clip.frames.mean((1, 2, 3)), expected, atol=4)
    source = decode_clip(tmp_path / f"clip.{ext}", fps=5, frame_size=16, sample_rate=16000)
    click = np.argmax(np.abs(source.audio) > 0.2) / 16000  # container time (codec delays included)
    assert abs(np.argmax(np.abs(clip.audio) > 0.2) / 16000 - (click - 0.8)) < 0.005


def test_a_file_that_fails_to_re_encode_is_skipped_and_reported(corpus, tmp_path, monkeypatch):
    manifest = load_manifest(corpus["manifest"])
    picked = manifest.subset([manifest.clip_ids.index(c) for c in ("wide", "span")])
    real = shards._reencode_file

    def failing(path, start, seconds, settings, target):  # the wide clip breaks mid-encode
        if path.name == "wide.mp4":
            raise ValueError("no video frame decoded")
        return real(path, start, seconds, settings, target)

    monkeypatch.setattr(shards, "_reencode_file", failing)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        index = shards.write_shards(picked, tmp_path / "re", progress=False,
                                    reencode={"short_side": 16, "fps": 4, "keyframe_interval_s": 1})
    row = picked.row_numbers[0]
    assert index["skipped"] == [[row, str(picked.paths[0]), "re-encode failed: ValueError: no video frame decoded"]]
    assert printed.getvalue().strip() == "dataset: 2 manifest rows, 1 clips used, 1 skipped (1x re-encode failed)"
    assert [s["clip_id"] for s in index["samples"]] == ["span"] and index["counts"]["train"] == 1
    assert not list((tmp_path / "re").glob(".tmp-*"))


def test_a_writer_killed_mid_shard_leaves_no_index_and_no_partial_shard_under_its_name(corpus, tmp_path,
                                                                                      monkeypatch):
    import webdataset

    out, real, calls = tmp_path / "killed", webdataset.TarWriter.write, []
    shutil.copytree(corpus["out"], out)  # a re-run over a complete folder, killed

    def dies_on_the_fifth_sample(self, sample):
        calls.append(sample["__key__"])
        if len(calls) == 5:
            raise KeyboardInterrupt  # the user's ^C, or the node going down
        return real(self, sample)

    monkeypatch.setattr(webdataset.TarWriter, "write", dies_on_the_fifth_sample)
    with pytest.raises(KeyboardInterrupt), contextlib.redirect_stdout(io.StringIO()):
        shards.write_shards(corpus["manifest"], out, samples_per_shard=PER_SHARD, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".tmp-train-000001.tar", "train-000000.tar"]
    with tarfile.open(out / "train-000000.tar") as tar:  # the finished shard is whole
        assert len(tar.getmembers()) == 2 * PER_SHARD
    with pytest.raises(shards.ShardError, match="index.json not found"):
        shards.read_index(out)
    monkeypatch.undo()
    with contextlib.redirect_stdout(io.StringIO()):
        again = shards.write_shards(corpus["manifest"], out, samples_per_shard=PER_SHARD, progress=False)
    assert again["samples"] == corpus["index"]["samples"] and not list(out.glob(".tmp-*"))


def test_read_index_refuses_a_partial_or_damaged_folder(corpus, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(corpus["out"], partial)
    (partial / "index.json").unlink()  # a writer killed before its last step
    with pytest.raises(shards.ShardError, match=r"index.json not found: it holds 5 .tar file\(s\) but no index: "
                                                r"the writer did not finish"):
        shards.read_index(partial)
    with pytest.raises(shards.ShardError, match="not found"):
        shards.read_index(tmp_path / "nowhere")
    damaged = tmp_path / "damaged"
    shutil.copytree(corpus["out"], damaged)
    tar = damaged / "train-000001.tar"
    tar.write_bytes(tar.read_bytes()[:-1024])
    with pytest.raises(shards.ShardError, match=r"train-000001.tar holds \d+ bytes, the index recorded"):
        shards.read_index(damaged)
    tar.unlink()
    with pytest.raises(shards.ShardError, match="train-000001.tar is missing"):
        shards.read_index(damaged)
    old = tmp_path / "old"
    shutil.copytree(corpus["out"], old)
    text = (old / "index.json").read_text()
    (old / "index.json").write_text(text.replace('"version": 1', '"version": 0', 1))
    with pytest.raises(shards.ShardError, match="version 0, this avlib reads version 1"):
        shards.read_index(old)
    (old / "index.json").write_text(text.replace('"avlib-shards"', '"other"', 1))
    with pytest.raises(shards.ShardError, match="format 'other', expected 'avlib-shards'"):
        shards.read_index(old)
    with pytest.raises(shards.ShardError, match="not an avlib-shards index; refusing to replace"):
        shards.write_shards(corpus["manifest"], old, progress=False)
    assert tarfile.is_tarfile(old / "train-000000.tar")  # refused before anything was removed


def test_the_cli_replaces_an_existing_folder_and_rejects_bad_options(corpus, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(corpus["out"], out)
    (out / ".tmp-train-000003.tar").write_bytes(b"left by a killed run")
    assert shards.main([str(corpus["manifest"]), str(out), "--samples-per-shard", "100", "--workers", "1"]) == 0
    assert "wrote 3 shards (train 8, val 2, test 2 samples)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "test-000000.tar", "train-000000.tar",
                                                     "val-000000.tar"]
    assert [s["samples"] for s in shards.read_index(out)["shards"]] == [8, 2, 2]
    assert shards.main([str(corpus["manifest"]), str(tmp_path / "r"), "--on-error", "raise"]) == 1  # 2 workers
    assert "row 13 (line 14)" in capsys.readouterr().err and not (tmp_path / "r" / "index.json").exists()
    with pytest.raises(SystemExit) as exit_:
        shards.main([str(corpus["manifest"]), str(out), "--sample-per-shard", "4"])
    assert exit_.value.code == 2 and "unrecognized arguments: --sample-per-shard" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        shards.main([str(corpus["manifest"]), str(out), "--samples", "4"])  # no abbreviations
    with pytest.raises(SystemExit):
        shards.main([str(corpus["manifest"]), str(out), "--short-side", "16"])
    assert "missing ['--fps', '--keyframe-interval-s']" in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    ({"samples_per_shard": 0}, r"samples_per_shard=0: expected an int >= 1"),
    ({"workers": 0}, r"workers=0: expected an int >= 1"),
    ({"on_error": "ignore"}, r"on_error='ignore': expected 'skip' or 'raise'"),
    ({"reencode": {"short_side": 17, "fps": 8, "keyframe_interval_s": 1}}, r"short_side=17: expected an even"),
    ({"reencode": {"short_side": 16, "fps": 8}}, r"missing key\(s\) \['keyframe_interval_s'\]"),
    ({"reencode": {"short_side": 16, "fps": 8, "keyframe_interval_s": 1, "size": 3}}, r"unknown key\(s\) \['size'\]"),
])
def test_bad_parameters_are_named(corpus, tmp_path, bad, message):
    with pytest.raises(shards.ShardError, match=message):
        shards.write_shards(corpus["manifest"], tmp_path / "x", progress=False, **bad)
    assert not (tmp_path / "x").exists()
