"""Scale: same bytes whatever --workers, resume after SIGKILL, --part I/N + merge, big files cut in units."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cli, clue_corpus, prepare, read_split, stream_of, tree_bytes

pytestmark = pytest.mark.slow  # end-to-end: trains, or prepares in several processes

FIXTURES = Path(__file__).parents[1] / "helpers.py"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Six files of different sizes, one of them gzipped."""
    root = tmp_path_factory.mktemp("corpus")
    for i, docs in enumerate([150, 40, 300, 10, 200, 80]):
        clue_corpus(root / f"f{i}.txt", docs, seed=10 + i)
    import gzip

    (root / "f3.txt.gz").write_bytes(gzip.compress((root / "f3.txt").read_bytes()))
    (root / "f3.txt").unlink()
    return root


prepare = functools.partial(prepare, defaults=("--seq-length", "96", "--valid-ratio", "0.1"))


def test_workers_give_identical_bytes_and_units_do_not_change_documents(tmp_path, vocab, corpus):
    assert prepare(vocab, [corpus], tmp_path / "w1", "--unit-mb", "0.02") == 0
    assert prepare(vocab, [corpus], tmp_path / "w2", "--unit-mb", "0.02", "--workers", "2") == 0
    one = tree_bytes(tmp_path / "w1")
    assert len([k for k in one if k.startswith("train/u")]) > 6  # big files were cut into several units
    assert one == tree_bytes(tmp_path / "w2")
    # one unit per file: other example boundaries, but the same documents, tokens and order
    assert prepare(vocab, [corpus], tmp_path / "whole") == 0
    small = json.loads((tmp_path / "w1" / "manifest.json").read_text())
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    for split in ("train", "valid"):
        for key in ("documents", "sentences", "tokens"):
            assert small["counts"][split][key] == whole["counts"][split][key]
        assert (
            stream_of(read_split(tmp_path / "w1" / split))[0]
            == stream_of(read_split(tmp_path / "whole" / split))[0]
        )


def _wait_for_units(proc: subprocess.Popen, units: Path, count: int) -> None:
    """Until ``count`` unit markers exist in ``units`` (or the process ends, or a minute passes)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.iterdir())) >= count:
            return
        time.sleep(0.01)


def test_resume_after_sigkill_gives_identical_bytes(tmp_path, vocab):
    src = tmp_path / "src"
    for i in range(3):
        clue_corpus(src / f"f{i}.txt", 1500, seed=100 + i)
    args = [
        "--input",
        str(src),
        "--tokenizer",
        str(vocab),
        "--seq-length",
        "96",
        "--valid-ratio",
        "0.1",
        "--unit-mb",
        "0.01",
        "--quiet",
    ]
    assert cli("prepare", *args, "--output", str(tmp_path / "ref")) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES), "prepare", *args, "--output", str(killed), "--workers", "2"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    units = killed / ".prep" / "units"
    _wait_for_units(proc, units, 10)
    assert proc.poll() is None, "prepare finished before it could be killed: make the corpus bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    done = len(list(units.iterdir()))
    assert cli("prepare", *args, "--output", str(killed), "--resume") == 0
    assert tree_bytes(killed) == tree_bytes(tmp_path / "ref")
    total = len(list((tmp_path / "ref" / "train").glob("u*.arrow")))
    assert 10 <= done < total  # it really was interrupted half-way
    assert cli("prepare", *args, "--output", str(killed), "--resume") == 0  # already complete: a no-op


def test_parts_merge_into_the_one_machine_result(tmp_path, vocab, corpus, capsys):
    assert prepare(vocab, [corpus], tmp_path / "full", "--unit-mb", "0.02") == 0
    parts = [tmp_path / f"part{i}" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        assert prepare(vocab, [corpus], part, "--unit-mb", "0.02", "--part", f"{i}/3") == 0
    sources = [[s["path"] for s in json.loads((p / "manifest.json").read_text())["sources"]] for p in parts]
    assert all(sources) and sum(sources, []) == sorted(sum(sources, []))  # contiguous, disjoint shares
    assert cli("merge", "--output", str(tmp_path / "merged"), *map(str, reversed(parts))) == 0
    assert tree_bytes(tmp_path / "merged") == tree_bytes(tmp_path / "full")
    capsys.readouterr()
    assert cli("merge", "--output", str(tmp_path / "m2"), str(parts[0]), str(parts[2])) == 2
    assert "parts missing: [2]" in capsys.readouterr().err
    assert prepare(vocab, [corpus], tmp_path / "other", "--part", "2/3", "--seq-length", "64") == 0
    assert (
        cli("merge", "--output", str(tmp_path / "m3"), str(parts[0]), str(tmp_path / "other"), str(parts[2]))
        == 2
    )
    assert "another job" in capsys.readouterr().err
    assert cli("merge", "--output", str(tmp_path / "m4"), str(tmp_path / "full")) == 2


_PEAK_RSS = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    assert not exit.code, exit.code\n"
    "usage = resource.getrusage\n"
    "print(usage(resource.RUSAGE_SELF).ru_maxrss, usage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _peak_rss_kib(vocab: Path, src: Path, out: Path, workers: int) -> tuple[int, int]:
    """Peak RSS (KiB) of a `prepare` process and of its largest worker process."""
    argv = ["prepare", "--input", str(src), "--tokenizer", str(vocab), "--output", str(out), "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(FIXTURES), *argv, "--workers", str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    main, child = proc.stdout.split()[-2:]
    return int(main), int(child)


def test_memory_does_not_grow_with_corpus_size(tmp_path, vocab):
    """Four times the input, the same peak memory, in the main process and in each worker.

    A worker's allocator reaches its high-water mark over its first few units, so the smaller run already
    gives each worker three of them.
    """
    clue_corpus(tmp_path / "doc.txt", 1200, seed=7)
    one = (tmp_path / "doc.txt").read_bytes()
    for copies in (6, 24):
        for i in range(copies):
            (tmp_path / f"in{copies}" / f"f{i}.txt").parent.mkdir(exist_ok=True)
            (tmp_path / f"in{copies}" / f"f{i}.txt").write_bytes(one)
    allowance = 8 * 1024  # KiB
    assert len(one) * 18 > 1.5 * allowance * 1024  # what the big run adds is well above the allowance
    for workers in (1, 2):
        small = _peak_rss_kib(vocab, tmp_path / "in6", tmp_path / f"s{workers}", workers)
        big = _peak_rss_kib(vocab, tmp_path / "in24", tmp_path / f"b{workers}", workers)
        assert big[0] < small[0] + allowance, (workers, small, big)
        if workers > 1:
            assert big[1] < small[1] + allowance, (small, big)


def test_progress_bar_and_summary(tmp_path, vocab, corpus, capsys):
    args = ["--input", str(corpus), "--tokenizer", str(vocab), "--output", str(tmp_path / "o")]
    assert cli("prepare", *args, "--seq-length", "96", "--workers", "2") == 0
    captured = capsys.readouterr()
    bar = captured.err.replace("\r", "\n").splitlines()
    assert any(
        line.startswith("prepare: 100%") and "M chars/s" in line and "M tokens/s" in line for line in bar
    )
    out = captured.out.splitlines()
    assert out[0].split() == ["split", "documents", "sentences", "tokens", "examples", "fill", "mean", "len"]
    assert [line.split()[0] for line in out[1:3]] == ["train", "valid"]
    assert any(line.startswith("this run: ") and "with 2 worker(s)" in line for line in out)


def _worker_pids(pid: int) -> list[int]:
    """The pool's worker processes among the children of ``pid`` (Linux /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the workers")
def test_a_killed_worker_fails_the_run_with_one_line_and_resume_finishes(tmp_path, vocab):
    src = tmp_path / "src"
    for i in range(3):
        clue_corpus(src / f"f{i}.txt", 1500, seed=200 + i)
    args = ["--input", str(src), "--tokenizer", str(vocab), "--seq-length", "96", "--unit-mb", "0.01"]
    assert cli("prepare", *args, "--quiet", "--output", str(tmp_path / "ref")) == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES), "prepare", *args, "--quiet", "--output", str(out), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_units(proc, out / ".prep" / "units", 5)
    workers = _worker_pids(proc.pid)
    assert proc.poll() is None and workers, "prepare finished before a worker could be killed"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("bart-data: error: a worker process died"), err
    assert "Traceback" not in err
    assert cli("prepare", *args, "--quiet", "--output", str(out), "--resume", "--workers", "2") == 0
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the workers")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_main_process_is_killed(tmp_path, vocab, sig):
    src = tmp_path / "src"
    for i in range(3):
        clue_corpus(src / f"f{i}.txt", 1500, seed=300 + i)
    args = ["--input", str(src), "--tokenizer", str(vocab), "--seq-length", "96", "--unit-mb", "0.01"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES), "prepare", *args, "--quiet", "--output", str(out), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_units(proc, out / ".prep" / "units", 3)
    workers = _worker_pids(proc.pid)
    assert proc.poll() is None and len(workers) == 2, "prepare finished before it could be killed"
    os.kill(proc.pid, sig)  # the main process only: its workers are not told
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "orphaned workers kept running after their main process died"
    assert cli("prepare", *args, "--quiet", "--output", str(out), "--resume", "--workers", "2") == 0
    assert cli("prepare", *args, "--quiet", "--output", str(tmp_path / "ref")) == 0
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
