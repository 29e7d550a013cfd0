"""``pretrain.cli.demo``: what the demo says its model learned, from the run's scalars (the demo itself
runs in tests/e2e/test_demo_e2e.py)."""

from __future__ import annotations

from pretrain.cli.demo import what_it_learned


def test_what_it_learned_says_it_copies_and_how_little_it_fills_in():
    scalars = {
        "eval/accuracy_copied": [(0.0, 240, 0.91)],
        "eval/accuracy": [(0.0, 200, 0.2), (0.0, 240, 0.12)],
        "eval/unigram_accuracy": [(0.0, 240, 0.04)],
    }
    text = what_it_learned(scalars)
    assert "(its evaluation at step 240)" in text
    assert "copy:    91% of the tokens the noise left in place come out right: it has learnt to copy" in text
    assert (
        "fill in: 12% of the corrupted (masked, replaced, moved) tokens come out right, 3.0 times the 4%"
        in text
    )
    scalars["eval/accuracy_copied"] = [(0.0, 240, 0.3)]
    assert "it has not even learnt to copy yet" in what_it_learned(scalars)
