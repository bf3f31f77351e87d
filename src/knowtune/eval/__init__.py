"""Evaluation: the closed-book probe scorer, generation, retention, and the audit report."""
