"""The learning loop's pure core, table by table: Wilson intervals against published values,
figures against a hand-counted confusion table, the promote decision, the disagreement verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.labels import DISAGREE, Label, ModelInfo, Prediction, decide
from bot.core.model_versions import LabelMetrics
from bot.core.review.figures import Answer, ModelKey, Proportion, figures_by_model, wilson
from bot.core.review.promotion import Measure, choose_measure, on_evaluation, on_reviews
from bot.core.review.records import CaseKey, Review, ReviewLabel, current_reviews

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REK = ModelKey("rekognition", "cxr.v2")
LOCAL = ModelKey("local", "v1")
N, P, X = ReviewLabel.NORMAL, ReviewLabel.PNEUMONIA, ReviewLabel.NOT_ASSESSABLE


# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score).
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0000),
    ],
)
def test_wilson_matches_newcombes_table(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_by_hand_for_nine_of_twelve():
    # p = .75, z² = 3.8415: centre .91006, spread .29265, denominator 1.32012
    assert wilson(9, 12) == pytest.approx((0.4677, 0.9111), abs=5e-5)


def test_wilson_refuses_nonsense_and_is_vacuous_without_cases():
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(5, 4)


def test_proportion_reads_like_a_clinical_figure():
    assert Proportion(9, 12).describe() == "75.0% (95% CI 46.8–91.1%, 9/12)"
    assert Proportion(0, 0).describe() == "n/a (no cases)"


def case(i: int) -> CaseKey:
    return CaseKey("C1", f"17600000{i:02d}.000100", f"F{i:03d}")


def review(i: int, label: ReviewLabel, minutes: int = 0, who: str = "U1") -> Review:
    return Review(case(i), who, label, T0 + timedelta(minutes=minutes))


def test_a_later_correction_replaces_an_earlier_review():
    reviews = [review(1, N, 0, "U1"), review(1, P, 5, "U2"), review(2, N, 1)]
    current = current_reviews(reviews)
    assert current[case(1)].label is P and current[case(1)].reviewer == "U2"
    assert current[case(2)].label is N
    # order of arrival doesn't matter, time does
    assert current_reviews(reversed(reviews))[case(1)].label is P


# A hand-counted table for one model (rows: the model's top label; columns: the reviewer):
#                 reviewer Pneumonia   reviewer Normal   Not assessable
#   said Pneumonia      5 (TP)              2 (FP)             1
#   said Normal         1 (FN)              4 (TN)             1
# sensitivity 5/6, specificity 4/6, agreement 9/12, 14 reviewed, 2 not assessable.
TABLE = (
    [(Label.PNEUMONIA, P)] * 5
    + [(Label.PNEUMONIA, N)] * 2
    + [(Label.PNEUMONIA, X)]
    + [(Label.NORMAL, P)]
    + [(Label.NORMAL, N)] * 4
    + [(Label.NORMAL, X)]
)


def test_figures_match_the_hand_counted_table():
    answers = [Answer(case(i), REK, said) for i, (said, _) in enumerate(TABLE)]
    reviews = current_reviews(review(i, truth) for i, (_, truth) in enumerate(TABLE))
    answers.append(Answer(case(99), REK, Label.NORMAL))  # never reviewed: not counted
    [fig] = figures_by_model(answers, reviews)

    assert (fig.answered, fig.reviewed, fig.not_assessable, fig.assessable) == (15, 14, 2, 12)
    c = fig.confusion
    assert (c.tp, c.fn, c.fp, c.tn) == (5, 1, 2, 4)
    assert (fig.sensitivity.k, fig.sensitivity.n) == (5, 6)
    assert (fig.specificity.k, fig.specificity.n) == (4, 6)
    assert (fig.agreement.k, fig.agreement.n) == (9, 12)
    assert fig.sensitivity.interval == pytest.approx((0.4365, 0.9699), abs=5e-5)
    assert fig.specificity.interval == pytest.approx((0.3000, 0.9032), abs=5e-5)
    assert fig.agreement.interval == pytest.approx((0.4677, 0.9111), abs=5e-5)


def test_a_correction_moves_a_case_between_cells():
    answers = [Answer(case(1), REK, Label.PNEUMONIA)]
    first = figures_by_model(answers, current_reviews([review(1, N, 0)]))[0]
    second = figures_by_model(answers, current_reviews([review(1, N, 0), review(1, P, 1)]))[0]
    assert (first.confusion.fp, first.confusion.tp) == (1, 0)
    assert (second.confusion.fp, second.confusion.tp) == (0, 1)


def test_a_review_of_a_disagreement_counts_toward_each_model():
    answers = [
        Answer(case(1), REK, Label.PNEUMONIA, uncertain=True),
        Answer(case(1), LOCAL, Label.NORMAL, uncertain=True),
    ]
    figs = {f.model: f for f in figures_by_model(answers, current_reviews([review(1, P)]))}
    assert (figs[REK].agreement.k, figs[REK].agreement.n) == (1, 1)
    assert (figs[LOCAL].agreement.k, figs[LOCAL].agreement.n) == (0, 1)
    assert figs[REK].uncertain == figs[LOCAL].uncertain == 1


def test_excluded_cases_never_count():
    answers = [Answer(case(i), REK, Label.NORMAL) for i in range(3)]
    reviews = current_reviews(review(i, N) for i in range(3))
    [fig] = figures_by_model(answers, reviews, exclude=frozenset({case(0)}))
    assert fig.agreement.n == 2


@pytest.mark.parametrize(
    ("running", "reviewed", "minimum", "measure"),
    [
        (True, 30, 30, Measure.AGREEMENT),
        (True, 29, 30, Measure.F1),
        (False, 500, 30, Measure.F1),
    ],
)
def test_the_measure_is_reviewed_cases_only_when_enough_and_running(
    running, reviewed, minimum, measure
):
    assert (
        choose_measure(candidate_running=running, reviewed_cases=reviewed, min_reviewed=minimum)
        is measure
    )


def test_a_worse_candidate_needs_two_confirmations():
    better = on_reviews("v3", "v2", Proportion(28, 30), Proportion(25, 30))
    worse = on_reviews("v3", "v2", Proportion(24, 30), Proportion(25, 30))
    assert not better.worse and better.confirmations_needed == 1
    assert worse.worse and worse.confirmations_needed == 2
    assert "same 30 reviewed cases" in worse.basis
    with pytest.raises(ValueError):
        on_reviews("v3", "v2", Proportion(1, 2), Proportion(1, 3))


def test_evaluation_fallback_is_labelled_in_distribution():
    labels = (LabelMetrics("PNEUMONIA", 0.95, 0.97), LabelMetrics("NORMAL", 0.93, 0.9))
    cmp = on_evaluation("v3", 0.91, labels, "v2", 0.94, why_fallback="candidate not running")
    assert cmp.measure is Measure.F1 and cmp.worse and cmp.confirmations_needed == 2
    assert "in-distribution" in cmp.basis
    unknown = on_evaluation("v3", 0.91, labels, "local v1", None)
    assert not unknown.comparable and not unknown.worse  # nothing to be worse than


def prediction(model: str, pneumonia: float, **kw) -> Prediction:
    info = ModelInfo("rekognition" if model == "rek" else "local", model, "v")
    return Prediction({Label.PNEUMONIA: pneumonia, Label.NORMAL: 1 - pneumonia}, info, **kw)


@pytest.mark.parametrize(
    ("first", "second", "label", "disagree"),
    [
        (0.95, 0.10, None, True),  # confident, and opposite: uncertain
        (0.95, 0.80, Label.PNEUMONIA, False),  # agree
        (0.60, 0.90, None, False),  # agree on the top label, first under the threshold
        (0.45, 0.55, None, True),  # both unsure, and opposite
    ],
)
def test_two_models_verdict(first, second, label, disagree):
    verdict = decide(prediction("rek", first, second=prediction("local", second)), 0.7)
    assert verdict.label is label and verdict.disagree is disagree
    assert [v.model.kind for v in verdict.answers()] == ["rekognition", "local"]
    assert verdict.second is not None and verdict.second.top is (
        Label.PNEUMONIA if second > 0.5 else Label.NORMAL
    )


def test_disagreement_wording():
    assert DISAGREE == "Uncertain: the two models disagree"


def test_review_labels_parse_from_button_values():
    assert ReviewLabel.parse("not_assessable") is X
    assert ReviewLabel.parse("Pneumonia") is P
    assert ReviewLabel.parse("maybe") is None
    assert X.label is None and P.label is Label.PNEUMONIA


def test_answers_given_after_an_export_are_not_held_out():
    from bot.core.learning.reviewing import held_out

    before = (Answer(case(1), REK, Label.NORMAL), T0)
    after = (Answer(case(1), LOCAL, Label.NORMAL), T0 + timedelta(days=2))
    other = (Answer(case(2), LOCAL, Label.NORMAL), T0 + timedelta(days=2))
    kept, dropped = held_out([before, after, other], {case(1): T0 + timedelta(days=1)})
    # a model answering after the image was exported may have been trained on it
    assert kept == [before[0], other[0]] and dropped == [after[0]]


# Exact McNemar by hand: n = b + c discordant cases, p = 2 · Σ_{k ≤ min(b, c)} C(n, k) / 2^n.
@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (5, 1, 2 * (1 + 6) / 64),  # 0.21875
        (1, 5, 2 * (1 + 6) / 64),
        (10, 0, 2 / 1024),
        (3, 3, 1.0),  # capped at 1
        (0, 0, 1.0),
    ],
)
def test_exact_mcnemar_by_hand(b, c, p):
    from bot.core.review.promotion import Paired

    assert Paired(b, c).p_value == pytest.approx(p)


def test_discordant_counts_must_match_the_agreements():
    from bot.core.review.promotion import Paired

    ok = on_reviews("v3", "v2", Proportion(28, 30), Proportion(24, 30), Paired(5, 1))
    assert ok.paired.p_value == pytest.approx(0.21875) and not ok.worse
    with pytest.raises(ValueError):
        on_reviews("v3", "v2", Proportion(28, 30), Proportion(24, 30), Paired(1, 1))
