"""`lora` and `dora`: low-rank adapters on every linear layer of the frozen LLM (peft), and the new head of a
classifier trained in full (peft's `modules_to_save`). DoRA (Liu et al. 2024) also learns each output's
magnitude (peft's `use_dora`)."""

from knowtune.train.classic.base import Recipe, head_modules
from knowtune.train.optim import decay_groups

TASK_TYPES = {"sequence": "SEQ_CLS", "token": "TOKEN_CLS", "generate": "CAUSAL_LM"}


class Lora(Recipe):
    frozen_base = True
    name = "lora"
    help = "LoRA adapters on the frozen LLM (and the new head): small, fast, keeps the base intact"
    dora = False

    def setup(self, model, s):
        from peft import get_peft_model

        from knowtune.train.hf import lean_lora, lora_config

        kind = "generate" if not head_modules(model) else ("token" if "TokenClassification" in type(model).__name__ else "sequence")
        extra = {"modules_to_save": ["score"]} if kind != "generate" else {}
        model = get_peft_model(model, lora_config(s, TASK_TYPES[kind], use_dora=self.dora, **extra))
        lean_lora(model)  # DoRA layers keep peft's forward (lean_lora passes them through)
        return model, decay_groups([(n, p) for n, p in model.named_parameters() if p.requires_grad], s.weight_decay)


class Dora(Lora):
    name = "dora"
    help = "DoRA adapters (LoRA with a learned magnitude per output, peft's use_dora)"
    dora = True
