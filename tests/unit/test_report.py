"""`python -m pretrain.report RUN_DIR`: the summary read back from TensorBoard event files."""

from __future__ import annotations

import sys

import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from pretrain.cli.report import main
from pretrain.rundir import RunDir
from pretrain.runlog import plot, summarize


def write_run(run_dir, max_steps=1000):
    (run_dir / "tensorboard").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"train": {"max_steps": max_steps}}))
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    for step in range(10, 110, 10):  # 10 steps every 5 s = 2 steps/s
        t = 1000.0 + step / 2
        writer.add_scalar("train/loss", 5.0 - step / 100, step, walltime=t)
        dip = step == 100  # the last interval was slow: the median of the last 10 ignores it
        writer.add_scalar("train/tokens_per_sec", 2000.0 if dip else 12345.0 + step, step, walltime=t)
    for step, loss in ((50, 4.2), (100, 3.9)):
        writer.add_scalar("eval/loss", loss, step, walltime=1000.0 + step / 2)
        writer.add_scalar("eval/accuracy", 0.3, step, walltime=1000.0 + step / 2)
        writer.add_scalar("eval/unigram_accuracy", 0.05, step, walltime=1000.0 + step / 2)
    writer.close()


def test_summary_numbers(tmp_path):
    write_run(tmp_path)
    text = summarize(tmp_path)
    assert "steps:           100 / 1,000 (10.0%)" in text
    assert "best eval loss:  3.9000 (step 100)" in text
    assert "eval accuracy:   0.300 on corrupted tokens (step 100, unigram baseline 0.050)" in text
    assert "12,390 tokens/s, 2.00 steps/s" in text  # median of 2,000 and 12,355 ... 12,435
    assert "ETA:             0:07:30 to step 1,000" in text  # 900 steps at 2 steps/s


def test_resumed_steps_count_once_and_the_latest_value_wins(tmp_path):
    write_run(tmp_path)
    writer = SummaryWriter(str(tmp_path / "tensorboard"), filename_suffix=".resumed")
    writer.add_scalar("eval/loss", 3.5, 100, walltime=2000.0)  # step 100 again, after a restart
    writer.close()
    assert "best eval loss:  3.5000 (step 100)" in summarize(tmp_path)


def test_cli(tmp_path, capsys):
    write_run(tmp_path / "run", max_steps=100)
    assert main([str(tmp_path / "run")]) == 0
    assert "ETA:             finished" in capsys.readouterr().out
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no TensorBoard event files" in err and err.count("\n") == 1


def test_a_stopped_run_says_where_it_resumes(tmp_path):
    write_run(tmp_path)  # logged up to step 100 of 1,000, long ago
    for step, complete in ((50, True), (100, False)):  # step-100 was interrupted while being written
        RunDir(tmp_path).checkpoint(step).mkdir(parents=True)
        if complete:
            RunDir.state_file(RunDir(tmp_path).checkpoint(step)).write_text("{}")
    text = summarize(tmp_path, now=1050.0 + 3600)  # last log at 1050 s
    assert "status:          stopped at step 100 (last log 1:00:00 ago), before max_steps" in text
    assert (
        f"resume:          from {tmp_path / 'checkpoints' / 'step-50'} (step 50, the newest complete" in text
    )
    command = f"python -m pretrain --config {tmp_path / 'config.yaml'} --train.output_dir {tmp_path} "
    assert command + "--train.resume auto" in text


def test_a_run_that_logs_is_running_and_one_without_checkpoint_starts_afresh(tmp_path):
    write_run(tmp_path)
    assert "status:          running (last log 0:01:40 ago)" in summarize(tmp_path, now=1150.0)
    assert "no complete checkpoint yet" in summarize(tmp_path, now=1e6)


def test_copied_accuracy_is_shown_beside_the_corrupted_one(tmp_path):
    write_run(tmp_path)
    writer = SummaryWriter(str(tmp_path / "tensorboard"), filename_suffix=".copied")
    writer.add_scalar("eval/accuracy_copied", 0.875, 100, walltime=1050.0)
    writer.close()
    assert "0.875 on copied tokens" in summarize(tmp_path)


def test_several_runs_side_by_side_and_plotted(tmp_path, capsys):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b")
    writer = SummaryWriter(str(tmp_path / "b" / "tensorboard"), filename_suffix=".more")
    writer.add_scalar("eval/loss", 3.25, 110, walltime=1055.0)
    writer.add_scalar("train/lr", 1e-4, 110, walltime=1055.0)
    writer.close()
    png = tmp_path / "curves.png"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    table = out.splitlines()[:3]
    assert table[0].split()[:3] == ["run", "steps", "train"]
    assert table[1].split()[:4] == [str(tmp_path / "a"), "100", "4.0000", "3.9000"]
    assert table[2].split()[:4] == [str(tmp_path / "b"), "110", "4.0000", "3.2500"]
    assert out.count("run:             ") == 2 and f"plot: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    loss, accuracy, lr, speed = plot([tmp_path / "a", tmp_path / "b"]).axes
    curves = {line.get_label(): line for line in loss.lines}
    assert set(curves) == {"a train", "a eval", "b train", "b eval"}
    assert list(curves["b eval"].get_xdata()) == [50, 100, 110]
    assert list(curves["b eval"].get_ydata()) == pytest.approx([4.2, 3.9, 3.25])
    assert {line.get_label() for line in accuracy.lines} == {
        f"{r} {k}" for r in "ab" for k in ("corrupted", "unigram baseline")
    }
    assert [line.get_label() for line in lr.lines] == ["b"]  # run a logged no LR
    assert list(speed.lines[0].get_ydata())[-1] == 2000.0


def test_plot_without_matplotlib_is_one_line(tmp_path, capsys, monkeypatch):
    write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    assert main([str(tmp_path), "--plot", str(tmp_path / "x.png")]) == 2
    out, err = capsys.readouterr()
    assert not out and err.count("\n") == 1 and "--plot needs matplotlib: pip install matplotlib" in err
    assert not (tmp_path / "x.png").exists()


def test_a_broken_config_or_event_file_is_a_warning_not_a_traceback(tmp_path, capsys):
    write_run(tmp_path / "a")
    (tmp_path / "a" / "config.yaml").write_text("train: [unclosed\n")
    assert main([str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "steps:           100\n" in out and "cannot read" in err and "planned steps unknown" in err
    (tmp_path / "b" / "tensorboard").mkdir(parents=True)
    (tmp_path / "b" / "tensorboard" / "events.out.tfevents.1.garbage").write_bytes(b"\x00\x17garbage" * 40)
    assert main([str(tmp_path / "b")]) == 0
    assert "hold no scalars (damaged, or none logged yet)" in capsys.readouterr().err
