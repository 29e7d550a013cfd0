"""The fault suite's figures: runs the tests marked ``faults`` (tests/e2e/test_faults_e2e.py,
test_kills_e2e.py and the fault tests of tests/unit; the long variant: more seeded kill rounds and fuzz
inputs than CI runs) and prints what was tried and what held.

    python bench/faults.py [--rounds 3] [--fuzz 1000] [--seed 0]

Kills are real SIGKILLs at seeded moments (``tests/killpoints.py``); a round counts as survived when the
resumed run equals the uninterrupted one (losses, final weights, exports, no temporaries) or, for
``prepare``, gives byte-identical shards. Every other figure is a test that must pass: a damaged file
detected with a one-line error, a full disk survived, a hostile corpus that neither crashes nor loses a
document uncounted.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = {  # a word in a test's name -> the figure it counts towards
    "full_disk": "full-disk cases survived",
    "disk_full": "full-disk cases survived",
    "hostile": "hostile corpora (one test each)",
    "million": "hostile corpora (one test each)",
    "pickle": "planted code never run",
    "auto_map": "planted code never run",
    "symlinks": "no write through a planted symlink",
    "merge": "failed merges left nothing half-built",
    "killed": "kill tests passed",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="seeded kill rounds per kill point")
    parser.add_argument("--fuzz", type=int, default=1000, help="hostile corpora to try")
    parser.add_argument("--seed", type=int, default=0, help="varies the kill moments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log, junit = Path(tmp) / "kills.jsonl", Path(tmp) / "junit.xml"
        env = {
            **os.environ,
            "BART_FAULT_ROUNDS": str(args.rounds),
            "BART_FAULT_SEED": str(args.seed),
            "BART_FUZZ_EXAMPLES": str(args.fuzz),
            "BART_FAULT_LOG": str(log),
        }
        started = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests",
            "-m",
            "faults",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        cases = ET.parse(junit).getroot().iter("testcase")
        results = [(c.get("name", ""), c.find("failure") is None and c.find("error") is None) for c in cases]
        rounds = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    print_figures(results, rounds, args.fuzz, seconds)
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    return proc.returncode


def print_figures(results: list[tuple[str, bool]], rounds: list[dict], fuzz: int, seconds: float) -> None:
    figures: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])  # figure -> [passed, run]
    for name, ok in results:
        figure = next(
            (f for word, f in CATEGORIES.items() if word in name), "damaged files detected or fallen back"
        )
        figures[figure][0] += ok
        figures[figure][1] += 1
    by_scenario: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in rounds:
        by_scenario[f"{r['scenario']}: {r['point']}"][0] += r["killed"]
        by_scenario[f"{r['scenario']}: {r['point']}"][1] += 1
    failed = sum(not ok for _, ok in results)
    print("| figure | value |\n|---|---|")
    for scenario, (killed, total) in sorted(by_scenario.items()):
        print(f"| SIGKILL, {scenario} | {killed} killed of {total} rounds, all resumed to the same result |")
    print(f"| kills survived | {sum(r['killed'] for r in rounds)} |")
    for figure, (passed, total) in sorted(figures.items()):
        print(f"| {figure} | {passed} of {total} tests pass |")
    print(f"| fuzz inputs tried | {fuzz} corpora + 1 million-empty-line file |")
    lost = "0" if all(ok for name, ok in results if "hostile" in name) else "some (a test failed)"
    print(f"| documents lost | {lost} |")
    print(f"| tests failed (a traceback or a wrong result) | {failed} |")
    print(f"| time | {seconds:.0f} s |")


if __name__ == "__main__":
    sys.exit(main())
