"""`head`: "fine-tuning I", a new dense head trained by gradient on the frozen LLM's last hidden states."""

from knowtune.errors import KnowtuneError
from knowtune.train.classic.base import Recipe, freeze_all_but, head_modules


class Head(Recipe):
    frozen_base = True
    name = "head"
    help = "a new dense head on the frozen LLM (fine-tuning I): only the head's weights train"
    kinds = ("sequence", "token")

    def setup(self, model, s):
        head = head_modules(model)
        if not head:
            raise KnowtuneError("The head method needs a classification task.", fix="use lora, freeze or full here.")
        return model, freeze_all_but(model, head, s)
