"""Where things are inside one transformer block, per architecture family: the one table.

Every strategy that reaches into a block by module name reads it from here: LoRA,
DoRA and (IA)^3 adapt the ``linear`` projections, prefix tuning starts its
prefixes from the ``key_value`` activations, bottleneck adapters (Houlsby,
Pfeiffer, Compacter, MAD-X) go after the ``sublayer_outputs``. A new family is
one row. Families are ``config.model_type`` values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    linear: tuple[str, ...]
    """Attention and feed-forward projections (adapting all beats q/v alone at equal budgets: QLoRA §4, Dettmers et al. 2023)."""
    key_value: tuple[str, str] | None = None
    """The key and the value projection, relative to one block."""
    sublayer_outputs: tuple[str, str] | None = None
    """The projections that end the attention and the feed-forward sub-layers, relative to one block."""


BERT = Architecture(("query", "key", "value", "dense"), ("attention.self.key", "attention.self.value"),
                    ("attention.output.dense", "output.dense"))
LLAMA = Architecture(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                     ("self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj", "mlp.down_proj"))

ARCHITECTURES: dict[str, Architecture] = {
    **dict.fromkeys(["bert", "roberta", "xlm-roberta", "electra", "camembert"], BERT),
    "mpnet": Architecture(("q", "k", "v", "o", "dense"), ("attention.attn.k", "attention.attn.v"), ("attention.attn.o", "output.dense")),
    "distilbert": Architecture(("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"), ("attention.k_lin", "attention.v_lin"),
                               ("attention.out_lin", "ffn.lin2")),
    **dict.fromkeys(["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"], LLAMA),
    "gpt2": Architecture(("c_attn", "c_proj", "c_fc")),
}

LINEAR = {family: list(a.linear) for family, a in ARCHITECTURES.items()}
KEY_VALUE = {family: a.key_value for family, a in ARCHITECTURES.items() if a.key_value}
SUBLAYER_OUTPUTS = {family: a.sublayer_outputs for family, a in ARCHITECTURES.items() if a.sublayer_outputs}
