#!/usr/bin/env python3
"""The TF-IDF + logistic-regression reference for `escalator learn`.

Reads the Hadoop bug reports (../shared/data/hadoop_bugs_2020_2022.csv),
splits them by creation time (before --split for fitting, the rest for
reporting, as `escalator learn --split` does), maps the priorities to the
same four classes (Blocker critical, Critical high, Major medium, Minor
and Trivial none) and fits scikit-learn's TfidfVectorizer (words and word
pairs, sublinear tf) and LogisticRegression on summary + description.
Prints one JSON object per variant: plain (scikit-learn's defaults) and
balanced (class weights inverse to frequency), each with per-class
precision and recall of its likeliest class, agreement, the mean log loss
of its probabilities (natural log), and the precision
at 80 % recall of critical + high when tickets are ranked by the
probability of either.

    python3 tools/tfidf_reference.py --csv ../shared/data/hadoop_bugs_2020_2022.csv --split 2022-01-01
"""
import argparse
import csv
import json
import math
from datetime import datetime

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

CLASSES = ["critical", "high", "medium", "none"]
LABEL = {"Blocker": 0, "Critical": 1, "Major": 2, "Minor": 3, "Trivial": 3}


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["Priority"] not in LABEL:
                continue
            at = datetime.strptime(r["Created"], "%d/%b/%y %H:%M")
            yield at, r["Issue id"], r["Summary"] + "\n\n" + r["Description"], LABEL[r["Priority"]]


def precision_at_recall(scores, urgent, recall):
    pos = sorted((s for s, u in zip(scores, urgent) if u), reverse=True)
    need = min(max(math.ceil(recall * len(pos)), 1), len(pos))
    t = pos[need - 1]
    flagged = [u for s, u in zip(scores, urgent) if s >= t]
    return sum(flagged) / len(flagged), t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--split", default="2022-01-01")
    a = ap.parse_args()
    cut = datetime.strptime(a.split, "%Y-%m-%d")
    data = sorted(rows(a.csv), key=lambda r: (r[0], r[1]))
    fit = [r for r in data if r[0] < cut]
    rep = [r for r in data if r[0] >= cut]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_fit = vec.fit_transform([r[2] for r in fit])
    x_rep = vec.transform([r[2] for r in rep])
    y_fit = [r[3] for r in fit]
    y_rep = [r[3] for r in rep]
    for name, weight in [("plain", None), ("balanced", "balanced")]:
        model = LogisticRegression(max_iter=5000, class_weight=weight)
        model.fit(x_fit, y_fit)
        proba = model.predict_proba(x_rep)
        # Columns follow model.classes_ (sorted labels 0..3).
        col = {c: i for i, c in enumerate(model.classes_)}
        p = [[row[col[c]] if c in col else 0.0 for c in range(4)] for row in proba]
        top = [max(range(4), key=lambda c: (pr[c], -c)) for pr in p]
        urgent = [y <= 1 for y in y_rep]
        scores = [pr[0] + pr[1] for pr in p]
        prec80, t80 = precision_at_recall(scores, urgent, 0.8)
        # The same decision rule as the learned trigger at that threshold.
        rule = [(0 if pr[0] >= pr[1] else 1) if pr[0] + pr[1] >= t80 else (2 if pr[2] >= pr[3] else 3) for pr in p]
        classes = []
        for c in range(4):
            support = sum(1 for y in y_rep if y == c)
            decided = sum(1 for d in top if d == c)
            hits = sum(1 for d, y in zip(top, y_rep) if d == c and y == c)
            classes.append({
                "class": CLASSES[c], "support": support,
                "precision": hits / decided if decided else 0.0,
                "recall": hits / support if support else 0.0,
            })
        print(json.dumps({
            "variant": name,
            "fitted_on": len(fit),
            "tickets": len(rep),
            "argmax_agreement": sum(1 for d, y in zip(top, y_rep) if d == y) / len(rep),
            "log_loss": -sum(math.log(max(pr[y], 1e-30)) for pr, y in zip(p, y_rep)) / len(rep),
            "urgent_precision_at_80_recall": prec80,
            "agreement_at_80_recall": sum(1 for d, y in zip(rule, y_rep) if d == y) / len(rep),
            "classes": classes,
        }))


if __name__ == "__main__":
    main()
