"""End-to-end pretraining on a tiny embedded dataset: the run-folder contract, determinism, kill/resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from avlib.config import ConfigError, PretrainConfig
from avlib.train import pretrain, read_metrics
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_dir, pretrain(tiny_config(run_dir))


def test_run_folder_contract(tiny_run):
    run_dir, summary = tiny_run
    assert json.loads((run_dir / "config.json").read_text())["sampler"] == "active"  # the default
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(summary["steps"]))
    assert {"step", "loss", "lr", "step_s"} <= set(rows[0])
    assert all(r["step_s"] > 0 for r in rows)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    for key in ("sampler", "seed", "steps", "wall_s", "final_loss", "probe", "probe_random_init"):
        assert key in on_disk, key
    for probe in (on_disk["probe"], on_disk["probe_random_init"]):
        for modality in ("video", "audio"):
            for kind in ("linear", "knn"):
                assert 0.0 <= probe[modality][kind] <= 1.0
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def test_same_seed_same_run_and_rerun_resumes_without_training(tiny_run, tmp_path):
    run_dir, summary = tiny_run
    again = pretrain(tiny_config(tmp_path / "again"))
    assert again["final_loss"] == summary["final_loss"]
    assert again["probe"] == summary["probe"]
    # the same command on a finished run folder trains nothing more and reports the same results
    rerun = pretrain(tiny_config(run_dir))
    assert rerun["final_loss"] == summary["final_loss"] and rerun["steps"] == summary["steps"]


def test_different_parameters_refuse_to_resume_a_run_folder(tiny_run):
    run_dir, _ = tiny_run
    with pytest.raises(ConfigError, match="temperature"):
        pretrain(tiny_config(run_dir, temperature=0.2))


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import avlib.train.loop as loop
    from tiny import tiny_config

    original_write = loop.MetricsLog.write
    def write_then_die(self, row):
        original_write(self, row)
        if row["step"] == {kill_after}:   # rows past the last checkpoint exist on disk, then SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)
    loop.MetricsLog.write = write_then_die
    loop.pretrain(tiny_config({run_dir!r}, epochs=3, checkpoint_every=4))
""")


def test_killed_run_resumes_to_the_same_final_metrics(tmp_path):
    reference = pretrain(tiny_config(tmp_path / "uninterrupted", epochs=3, checkpoint_every=4))
    killed_dir = tmp_path / "killed"
    script = KILLER.format(tests=str(ROOT / "tests"), kill_after=5, run_dir=str(killed_dir))
    process = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert max(r["step"] for r in read_metrics(killed_dir)) == 5  # written after the step-4 checkpoint
    assert not (killed_dir / "summary.json").exists()

    resumed = pretrain(tiny_config(killed_dir, epochs=3, checkpoint_every=4))
    assert [r["loss"] for r in read_metrics(killed_dir)] == [r["loss"] for r in read_metrics(tmp_path / "uninterrupted")]
    assert resumed["final_loss"] == reference["final_loss"]
    assert resumed["probe"] == reference["probe"]


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"sampler='moco_typo'.*valid choices: \[.*'random'"):
        PretrainConfig(sampler="moco_typo")


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=1), "batch_size"),
    (dict(crop_size=80), "crop_size"),
    (dict(momentum=1.0), "momentum"),
    (dict(video_encoder="vit"), "video_encoder"),
    (dict(window_s=5.0), "window_s"),
    (dict(audio_offset_s=-0.5), r"audio_offset_s=-0.5 must be >= 0"),
    (dict(device="tpu"), "device"),
])
def test_bad_parameters_name_themselves(bad, message):
    with pytest.raises(ConfigError, match=message):
        PretrainConfig(**bad)


@pytest.mark.parametrize("bad, message", [
    (dict(shuffle_bn="false"), r"shuffle_bn='false': expected bool, got str"),  # a truthy string
    (dict(max_steps="none"), r"max_steps='none': expected int \| None, got str"),
    (dict(epochs=2.5), r"epochs=2.5: expected int, got float"),
    (dict(sampler=None), r"sampler=None: expected str"),
])
def test_a_value_of_the_wrong_type_names_the_parameter(bad, message):
    with pytest.raises(ConfigError, match=message):
        PretrainConfig(**bad)
    assert PretrainConfig(lr=1, max_steps=None).lr == 1  # an int where a float is expected is fine


def test_unknown_parameter_is_rejected():
    with pytest.raises(ConfigError, match="learning_rate"):
        PretrainConfig.from_dict({"learning_rate": 0.1})


def test_batch_larger_than_the_training_set_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        pretrain(tiny_config(tmp_path / "big", batch_size=64, dictionary_size=64))
