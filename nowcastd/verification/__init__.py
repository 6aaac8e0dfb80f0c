"""Scores, evaluation against baselines, and figures."""
