"""Benchmark `data_prep prepare` end to end against the raw Rust tokenizer, on the same text.

    python bench/bench_prep.py [--copies 400] [--workers 1 2] [--repeat 1] [--corpus FILE] [--vocab FILE]

The corpus (default: ../shared/corpus/cluecorpussmall_sample.txt) is replicated into ``--copies`` files
(400: 282 M characters, long enough that the ~2 s of start-up is a small part). Each configuration runs
`prepare` in a fresh process, ``--repeat`` times interleaved (1 2 1 2 ...; the median counts), and
reports: wall time, the throughput of the processing phase as printed by prepare, the start-up and
finish time (wall minus that phase), chars/s per worker, the peak RSS of the largest process
(getrusage of the children) and of all its processes together (sampled). In the same run the raw
BertTokenizerFast batch throughput on the same lines is measured with one thread (per core).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
RUNNER = (
    "import argparse, sys\n"
    "from data_prep.cli import prepare\n"
    "from data_prep.errors import run_cli\n"
    "if __name__ == '__main__':\n"
    "    p = argparse.ArgumentParser(); prepare.configure(p)\n"
    "    sys.exit(run_cli(lambda: prepare.run(p.parse_args(sys.argv[1:])), 'prepare'))\n"
)


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


def measure(argv: list[str]) -> None:
    """Child mode: run prepare in a grandchild; print its wall time, its own throughput figure, the peak
    RSS of its largest process (getrusage) and of all its processes together (sampled) as JSON."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak_total = 0
    while proc.poll() is None:
        peak_total = max(peak_total, _tree_rss_kib(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"prepare failed: {stderr}")
    rate = re.search(r"= ([\d.]+)M chars/s", stdout)
    print(
        json.dumps(
            {
                "wall": wall,
                "phase_mchars": float(rate.group(1)) if rate else None,
                "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "total_mib": peak_total / 1024,
            }
        )
    )


def raw_tokenizer(vocab: Path, lines: list[str]) -> float:
    """Chars/s of BertTokenizerFast.encode_batch (one thread) over the corpus lines."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as d:
        shutil.copyfile(vocab, Path(d) / "vocab.txt")
        backend = BertTokenizerFast.from_pretrained(d).backend_tokenizer
    chars = sum(len(line) for line in lines)
    start = time.perf_counter()
    for i in range(0, len(lines), 1000):
        backend.encode_batch(lines[i : i + 1000], add_special_tokens=False)
    return chars / (time.perf_counter() - start)


def _run_prepare(src: Path, vocab: Path, out: Path, workers: int) -> dict:
    argv = ["--input", str(src), "--tokenizer", str(vocab), "--output", str(out), "--quiet"]
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", *argv, "--workers", str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(out)
    return json.loads(proc.stdout)


def _median(runs: list[dict]) -> dict:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "cluecorpussmall_sample.txt")
    parser.add_argument("--vocab", type=Path, default=SHARED / "google_zh_vocab.txt")
    parser.add_argument("--copies", type=int, default=400, help="files the corpus is replicated into")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (median)")
    args = parser.parse_args()
    for path in (args.corpus, args.vocab):
        if not path.is_file():
            sys.exit(f"bench_prep: {path} not found (pass --corpus / --vocab)")
    text = args.corpus.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus"
        src.mkdir()
        for i in range(args.copies):
            (src / f"part-{i:04d}.txt").write_text(text, encoding="utf-8")
        chars = len(text) * args.copies
        runs: dict[int, list[dict]] = {w: [] for w in args.workers}
        for _ in range(args.repeat):
            for workers in args.workers:
                runs[workers].append(_run_prepare(src, args.vocab, Path(tmp) / f"out{workers}", workers))
        results = {w: _median(r) for w, r in runs.items()}
        raw = raw_tokenizer(args.vocab, [line for line in text.split("\n") if line.strip()] * 4)

    print(
        f"corpus: {args.corpus.name} x {args.copies} = {chars / 1e6:.1f}M chars, "
        f"{len(text.encode()) * args.copies / 2**20:.1f} MiB; machine: {os.cpu_count()} cores"
    )
    print(
        f"{'workers':>7} {'wall s':>7} {'e2e M chars/s':>14} {'per worker':>11} {'phase M chars/s':>16} "
        f"{'start-up s':>11} {'peak RSS MiB':>13} {'all procs MiB':>14}"
    )
    for workers, r in results.items():
        e2e = chars / r["wall"] / 1e6
        fixed = r["wall"] - chars / (r["phase_mchars"] * 1e6)
        print(
            f"{workers:>7} {r['wall']:>7.2f} {e2e:>14.2f} {e2e / workers:>11.2f} {r['phase_mchars']:>16.2f} "
            f"{fixed:>11.2f} {r['peak_mib']:>13.0f} {r['total_mib']:>14.0f}"
        )
    if args.repeat > 1:
        walls = {w: " ".join(f"{r['wall']:.2f}" for r in rs) for w, rs in runs.items()}
        print("wall s of each run: " + "; ".join(f"{w} worker(s): {t}" for w, t in walls.items()))
    print(f"raw BertTokenizerFast.encode_batch, 1 thread: {raw / 1e6:.2f}M chars/s")
    first = min(results)
    e2e_first = chars / results[first]["wall"]
    print(f"ratio end-to-end per worker ({first} worker) / raw tokenizer per core: {e2e_first / raw:.1f}x")
    phase_first = results[first]["phase_mchars"] * 1e6
    print(f"ratio processing phase ({first} worker) / raw tokenizer: {phase_first / raw:.1f}x")
    for workers in results:
        if workers != first:
            up = results[first]["wall"] / results[workers]["wall"]
            phase = results[workers]["phase_mchars"] / results[first]["phase_mchars"]
            print(f"speed-up {first} -> {workers} workers: {up:.2f}x end to end, {phase:.2f}x processing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
