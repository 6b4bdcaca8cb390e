"""Offline evaluation: splits without leakage, ranking and beyond-accuracy metrics, external
baselines (EASE, implicit ALS), strategies scored through the serving SQL, tuning and reports."""
