"""``bench/dictionary_schedule.py``: the table of the schedule checks says what each run changed, how close
to chance its loss came and went, whether its dictionary collapsed, and its probes where it probed."""

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
