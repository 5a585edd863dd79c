"""``bench/dictionary_schedule.py``: the table of the schedule checks says what each run changed, how close
to chance its loss came and went, whether its dictionary collapsed, and its probes where it probed; the onset
table says when each run's positive pulled ahead of the fresh negatives."""

import csv
import importlib.util
import json
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("dictionary_schedule",
                                              Path(__file__).parents[1] / "bench" / "dictionary_schedule.py")
dictionary_schedule = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dictionary_schedule)

COLUMNS = ["step", "loss", "uniform_loss", "video_dict_erank", "video_dict_cosine"]


def make_run(folder: Path, config: dict, ratios: list[float], ranks: list[float], probes: dict | None = None,
             ended: bool = True, extra: dict | None = None) -> Path:
    """A run folder with ``metrics.csv`` whose loss is ``ratio`` x a uniform loss of 2.0 at each step
    (``extra``: more columns, one value per step)."""
    extra = extra or {}
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"run_dir": str(folder), "probe": probes is not None, **config}))
    with (folder / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS + list(extra))
        writer.writeheader()
        for step, (ratio, rank) in enumerate(zip(ratios, ranks)):
            writer.writerow({"step": step, "loss": 2.0 * ratio, "uniform_loss": 2.0, "video_dict_erank": rank,
                             "video_dict_cosine": 1.0 / rank, **{k: v[step] for k, v in extra.items()}})
    if ended:
        (folder / "summary.json").write_text(json.dumps(probes or {"steps": len(ratios)}))
    return folder


def test_table_reads_changes_chance_collapse_and_probes(tmp_path):
    steps = 400
    # the reference: its loss dips to half of chance at step 100, then climbs back to chance; its rank collapses
    dip = [0.5 + abs(step - 100) / 600 for step in range(steps)]
    reference = make_run(tmp_path / "reference", {"sampler": "random", "lr": 0.002}, dip,
                         [64.0 - 60.0 * step / steps for step in range(steps)],
                         {"probe": {"video": {"linear": 0.1}, "audio": {"linear": 0.2}},
                          "probe_random_init": {"video": {"linear": 0.4}, "audio": {"linear": 0.3}}})
    check = make_run(tmp_path / "check", {"sampler": "random", "lr": 0.0005}, [0.6] * 150, [50.0] * 150, ended=False)
    # a joint run that trains, then declines: v2a loss over chance 0.7 to step 299, then 1.1; intra top1 the reverse
    late = [step >= 300 for step in range(steps)]
    joint = make_run(tmp_path / "joint", {"sampler": "random", "lr": 0.002, "objective": "joint"}, [0.9] * steps,
                     [30.0] * steps, extra={"v2a_loss": [2.2 if x else 1.4 for x in late],
                                            "intra_video_top1": [0.1 if x else 0.4 for x in late]})
    lines = dictionary_schedule.table(reference, [check, joint]).splitlines()
    header, reference_row, check_row, joint_row = lines[0], lines[2], lines[3], lines[4]
    assert "changed against the reference" in header
    cells = [cell.strip() for cell in reference_row.strip("|").split("|")]
    assert cells[1] == "(the reference)" and cells[3] == str(steps)
    # the 50-step running mean's minimum, at the dip: 0.5 + the mean of |d| / 600 over d in [-25, 25) = 0.52
    assert cells[4] == "0.52 @ 100"
    assert float(cells[5]) > 0.9  # back near chance over the last 50 steps
    assert cells[6] == "19 / 4"  # rank at step 300 and at the end
    assert cells[8:10] == ["10.0 vs 40.0", "20.0 vs 30.0"]
    assert cells[10:] == ["–", "–"]  # no v2a_loss / intra_video_top1 columns: not a joint run
    cells = [cell.strip() for cell in check_row.strip("|").split("|")]
    assert cells[1] == "lr=0.0005"  # the bookkeeping (run_dir, probe) is not a change
    assert cells[3] == "150 (stopped)"
    assert cells[6] == "50 / 50"  # rank at "step 300" of a run stopped before it: its last step
    assert cells[8:] == ["–", "–", "–", "–"]
    cells = [cell.strip() for cell in joint_row.strip("|").split("|")]
    assert cells[1] == "objective=joint"
    assert cells[10:] == ["0.70 → 1.10", "0.40 → 0.10"]


def test_onset_finds_where_the_positive_pulls_ahead_and_says_never_where_it_does_not(tmp_path):
    steps, per_epoch = 300, 10
    config = {"sampler": "random", "batch_size": 32, "num_classes": 10, "dictionary_size": 256, "objective": "cross",
              "epochs": 30, "max_steps": None}
    # the margin is 0 to step 149, then 0.3; top1 is 0.01 to step 199, then 0.2
    ahead = [0.0 if step < 150 else 0.3 for step in range(steps)]
    columns = lambda margin, top1: {"epoch": [step // per_epoch for step in range(steps)], "pos_sim": [0.5] * steps,
                                    "batch_neg_sim": [0.5 - m for m in margin], "top1": top1}
    learns = make_run(tmp_path / "learns", config, [0.8] * steps, [30.0] * steps,
                      extra=columns(ahead, [0.01 if step < 200 else 0.2 for step in range(steps)]))
    tied = make_run(tmp_path / "tied", {**config, "dictionary_size": 4096}, [0.7] * 120, [30.0] * 120, ended=False,
                    extra={k: v[:120] for k, v in columns([0.0] * steps, [0.01] * steps).items()})
    lines = dictionary_schedule.onset([learns, tied]).splitlines()
    learns_row = [cell.strip() for cell in lines[2].strip("|").split("|")]
    # first window end n (steps 0..n-1) with a mean above 0.1: (n - 150) * 0.3 / 50 > 0.1 -> n - 150 > 16.7 -> n = 167
    assert learns_row[1:5] == ["320", "10", "256", "cross"]
    assert learns_row[5] == "300 (30)" and learns_row[6] == "167 (17)"
    # top1 over 2/32 = 0.0625: (n - 200) * 0.2 + (50 - (n - 200)) * 0.01 > 3.125 -> n - 200 > 13.8 -> n = 214
    assert learns_row[7] == "214 (22)" and learns_row[8:] == ["0.300", "0.200"]
    tied_row = [cell.strip() for cell in lines[3].strip("|").split("|")]
    assert tied_row[3] == "4096" and tied_row[5] == "120 of 300, stopped (12)"
    assert tied_row[6:8] == ["never", "never"] and tied_row[8] == "0.000"
