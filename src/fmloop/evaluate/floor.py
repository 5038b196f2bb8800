"""The classic floor a fine-tuned text classifier must beat: TF-IDF (words and bigrams) and a
logistic regression on exactly the labels it trained on, scored on the same held-out rows.

Fine-tuning fits it at the end of every single-label text classification run (seconds; the
manifest's `floor`), the transfer ladder uses it for its floor cells, and the demo prints it beside
its champion: a model that loses to it has not paid for its pretraining, and should say so.

    fit_floor       TfidfVectorizer(1-2 grams, sublinear tf) + logistic_cv (balanced class weights,
                    C by stratified K-fold cross-validation on the log loss, K = min(5, the rarest class))
    compare_floor   its accuracy and the model's paired difference (bootstrap interval) on test
"""

from __future__ import annotations

import numpy as np

from fmloop.tasks.bootstrap import paired_bootstrap

MAX_FLOOR_ROWS = 50_000  # above this many training rows the floor is not fitted (minutes, and nobody doubts the model)


def logistic_cv(Cs, folds, seed: int = 0):
    """LogisticRegressionCV as fmloop fits it (here and in the `embedding` strategy): balanced class
    weights, C by cross-validation on the log loss (accuracy is flat across C on a few dozen rows,
    and its ties go to the most regularised C, with probabilities near uniform), L2."""
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    quiet = {}  # scikit-learn 1.8+ announces changes of defaults: state today's behaviour
    parameters = inspect.signature(LogisticRegressionCV).parameters
    if "use_legacy_attributes" in parameters:
        quiet.update(l1_ratios=(0.0,), use_legacy_attributes=False)
    return LogisticRegressionCV(
        Cs=Cs, cv=folds, class_weight="balanced", scoring="neg_log_loss", max_iter=5000, random_state=seed, **quiet
    )


def fit_floor(texts: list[str], y: np.ndarray, seed: int = 0):
    """A fitted scikit-learn pipeline (predict / predict_proba over raw texts)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    present = np.unique(y)
    rarest = int(np.bincount(y)[present].min()) if len(y) else 0
    if rarest >= 2 and len(present) > 1:
        folds = StratifiedKFold(min(5, rarest), shuffle=True, random_state=seed)
        classifier = logistic_cv(10, folds, seed)
    else:  # one example of some class: nothing to cross-validate
        classifier = LogisticRegression(C=10, class_weight="balanced", max_iter=5000)
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), classifier)
    return model.fit(list(texts), y)


def floor_logits(floor, texts: list[str], n_classes: int) -> np.ndarray:
    """(N, n_classes) log-probabilities of the fitted floor (classes it never saw: -inf-like)."""
    proba = floor.predict_proba(list(texts))
    out = np.full((len(texts), n_classes), -1e4, dtype=np.float32)
    out[:, floor.classes_] = np.log(np.clip(proba, 1e-12, 1.0))
    return out


def compare_floor(train_texts, y_train, test_texts, y_test, model_logits: np.ndarray, seed: int = 0) -> dict:
    """The floor's test accuracy and the model's paired difference from it."""
    floor = fit_floor(train_texts, np.asarray(y_train), seed)
    logits = floor_logits(floor, test_texts, model_logits.shape[1])
    test = paired_bootstrap("classification", np.asarray(y_test), model_logits, logits, seed=seed)
    return {
        "method": "TF-IDF (1-2 grams) + logistic regression, C by cross-validation",
        "labels": len(y_train),
        "accuracy": float(np.mean(np.argmax(logits, -1) == np.asarray(y_test))),
        "difference": test["difference"],
        "interval": test["interval"],
        "p_value": test["p_value"],
    }


def describe_floor(floor: dict, model_accuracy: float) -> str:
    low, high = floor["interval"]
    verdict = "above" if low > 0 else "below" if high < 0 else "level with"
    return (
        f"TF-IDF + logistic regression on the same {floor['labels']} labels: {floor['accuracy']:.4f} test accuracy; "
        f"this model {model_accuracy:.4f}, {verdict} it ({100 * floor['difference']:+.1f} points, "
        f"95% interval [{100 * low:+.1f}, {100 * high:+.1f}])"
    )
