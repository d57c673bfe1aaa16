"""The advice on a stored decision threshold that does much worse than the best-F1 one."""

from __future__ import annotations

from inspekt.tasks.shared import ADVISE_FROM, threshold_note


def test_a_threshold_note_only_when_the_best_f1_is_clearly_better():
    now = {"f1": 0.7, "escape_rate": 0.4, "false_reject_rate": 0.01}
    close = {"f1": 0.7 + ADVISE_FROM / 2, "escape_rate": 0.2, "false_reject_rate": 0.05}
    assert threshold_note(now, close, 0.3) is None
    far = {"f1": 0.9, "escape_rate": 0.1, "false_reject_rate": 0.08}
    note = threshold_note(now, far, 0.3)
    assert note.startswith("at the stored threshold F1 is 0.70 (40% of the defects pass, 1% of the OK images rejected)")
    assert "a threshold of 0.3 gives F1 0.90 (10% of the defects pass, 8% of the OK images rejected)" in note


def test_a_threshold_note_leaves_out_rates_it_does_not_have():
    note = threshold_note({"f1": 0.1}, {"f1": 0.8, "escape_rate": None}, 0.25)  # no normal class: no rates
    assert "F1 is 0.10; on these images a threshold of 0.25 gives F1 0.80." in note


def test_a_threshold_note_names_how_the_model_decides():
    note = threshold_note({"f1": 0.2}, {"f1": 0.8}, 0.3, "the most probable class")
    assert note.startswith("at the most probable class F1 is 0.20;") and "or the scores you report flatter it" in note
