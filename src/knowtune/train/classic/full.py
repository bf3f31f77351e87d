"""`full`: "fine-tuning II", every weight of the LLM (and the new head, for classifiers) trains."""

from knowtune.train.classic.base import Recipe


class Full(Recipe):
    name = "full"
    help = "every weight trains (fine-tuning II): the most capacity, the most memory, and the most forgetting"
