#!/usr/bin/env python3
"""Reference VADER compound scores for every message of the Twitter
customer-care conversations, from the reference implementation
(pip install vaderSentiment==3.3.2). The SDK's parity test compares its port
against this file:

    python3 tools/vader_reference.py ../shared/data/twitter_care_dev.jsonl \
        > guest-sdk/tests/data/vader_reference.tsv
"""
import json
import sys

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

analyzer = SentimentIntensityAnalyzer()
print("conversation\tmessage\tcompound")
with open(sys.argv[1], encoding="utf-8") as f:
    for c, line in enumerate(f):
        for m, turn in enumerate(json.loads(line)["dialogContent"]):
            score = analyzer.polarity_scores(turn["message"])["compound"]
            print(f"{c}\t{m}\t{score}")
