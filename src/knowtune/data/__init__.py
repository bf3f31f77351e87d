"""Data: readers for every accepted format, validation, knowledge (facts, splits, probes) and augmentation."""
