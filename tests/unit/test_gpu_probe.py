"""``bench/gpu_probe.py`` (loaded from its file: bench/ is no package): without its packages it names what
is missing in one line. (``--tiny`` end to end: tests/e2e/test_gpu_probe_e2e.py.)"""

from __future__ import annotations

from helpers import bench_script

gpu_probe = bench_script("gpu_probe")


def test_gpu_probe_names_what_is_missing(monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n: None if n in ("datasets", "snownlp") else find_spec(n)
    )
    assert gpu_probe.main([]) == 2
    assert capsys.readouterr().out.strip() == (
        "gpu_probe: missing packages: datasets snownlp (pip install them, or carry them in)"
    )
