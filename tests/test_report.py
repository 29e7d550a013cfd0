"""`python -m pretrain.report RUN_DIR`: the summary read back from TensorBoard event files."""

from __future__ import annotations

import yaml
from torch.utils.tensorboard import SummaryWriter

from pretrain.report import main, summarize


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
