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
from avlib.train import distributed, pretrain, read_metrics
from avlib.train.loop import build_training, load_training_data, step_loader, train_step, update_dictionaries
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
                # per-class results beside accuracy (3 balanced classes: the tail is class 2, with test clips)
                assert 0.0 <= probe[modality][f"{kind}_balanced"] <= 1.0
                assert 0.0 <= probe[modality][f"{kind}_tail"] <= 1.0
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
    import avlib.train.run_folder as run_folder
    from avlib.train import pretrain
    from tiny import tiny_config

    original_write = run_folder.MetricsLog.write
    def write_then_die(self, row):
        original_write(self, row)
        if row["step"] == {kill_after}:   # rows past the last checkpoint exist on disk, then SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)
    run_folder.MetricsLog.write = write_then_die
    pretrain(tiny_config({run_dir!r}, epochs=3, checkpoint_every=4))
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


@pytest.mark.parametrize("name, value", [("sampler", "moco_typo"), ("video_encoder", "r3d"),
                                         ("audio_encoder", "vggish"), ("active_selector", "badge_typo"),
                                         ("active_embedding", "grad")])
def test_unknown_registry_name_lists_the_valid_ones_before_any_work(tmp_path, name, value):
    cfg = PretrainConfig(run_dir=str(tmp_path / "run"), **{name: value})  # config.py cannot see the registries
    with pytest.raises(ConfigError, match=rf"{name}='{value}' is not valid; valid choices: \["):
        pretrain(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=1), "batch_size"),
    (dict(crop_size=80), "crop_size"),
    (dict(momentum=1.0), "momentum"),
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


def test_the_step_functions_called_by_hand_are_the_loops_steps(tmp_path):
    """train_step and update_dictionaries are the loop's stages: called on their own, step by step,
    they give the losses the loop wrote, bit for bit (metrics.csv keeps floats exactly)."""
    pretrain(tiny_config(tmp_path / "loop", max_steps=4, probe=False))
    loop_rows = read_metrics(tmp_path / "loop")
    cfg = tiny_config(tmp_path / "by_hand", max_steps=4, probe=False)
    world, device = distributed.start("cpu")
    cache, train_indices = load_training_data(cfg, world)
    t = build_training(cfg, world, device, cache, train_indices, key_groups=1)
    t.model.train()
    t.momentum_model.train()
    for step, batch in zip(range(t.total_steps), step_loader(t, cache, train_indices, start_step=0)):
        outcome = train_step(t, batch, step)
        diagnostics = {**outcome.diagnostics, **update_dictionaries(t, outcome.global_batch, recorder=None)}
        for name in ("loss", "v2a_loss", "a2v_loss", "top1"):
            assert diagnostics[name] == loop_rows[step][name], (step, name)
        assert outcome.lr == loop_rows[step]["lr"]
    assert step == 3 and len(t.sampler.dictionaries()["video"]) > 0
