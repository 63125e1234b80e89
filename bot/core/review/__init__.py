"""The learning loop's pure core: reviews of verdicts, figures per model version, the promote
decision and the two-models-disagree verdict. No Slack, no storage: plain data in, plain data
out, so every figure can be checked against a hand-computed table.

- `records`: review labels, reviews, which review of a case counts (the latest);
- `figures`: agreement, sensitivity and specificity with 95% Wilson intervals per model version;
- `promotion`: is a candidate version worse than the served one, and by which measure;
- `disagreement`: one verdict from two models' answers.
"""
