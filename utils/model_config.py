"""The BERT/NEZHA config keys both trees read, their types and ranges, and the vocabulary a config must cover.

Both trees check a config where they read it (NEZHA-TensorFlow/modeling.py `BertConfig.from_json_file`,
TinyBERT/transformer/modeling.py), so that `"hidden_size": "32"`, `null`, `1.5` or a negative layer count stops
with the file, the line of the key and what was expected, instead of a TypeError inside a framework. Keys not
listed here (directionality, pooler_*, Hugging Face's architectures, id2label, ...) pass unchecked; a listed
key that is absent takes the tree's default, except vocab_size, which has none.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from utils.errors import InputError, line_of


@dataclass(frozen=True)
class Rule:
    """What one key holds: a JSON type ("int", "number", "bool", "str") and, for numbers, a range."""

    kind: str
    minimum: Optional[float] = None          # inclusive
    below: Optional[float] = None            # exclusive upper bound
    nullable: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, int if self.kind == "int" else (int, float)):
            return False
        return ((self.minimum is None or value >= self.minimum)
                and (self.below is None or value < self.below))

    def expected(self) -> str:
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        elif self.kind == "int":
            text = "a positive integer" if self.minimum == 1 else "an integer"
        elif self.minimum == 0 and self.below == 1:
            text = "a probability (a number from 0 to below 1)"
        elif self.minimum == 0:
            text = "a number >= 0"
        else:
            text = "a number"
        return f"{text} or null" if self.nullable else text


POSITIVE_INT = Rule("int", minimum=1)
PROBABILITY = Rule("number", minimum=0, below=1)

RULES: dict[str, Rule] = {
    "vocab_size": POSITIVE_INT,
    "hidden_size": POSITIVE_INT,
    "num_hidden_layers": POSITIVE_INT,
    "num_attention_heads": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "hidden_act": Rule("str"),
    "hidden_dropout_prob": PROBABILITY,
    "attention_probs_dropout_prob": PROBABILITY,
    "max_position_embeddings": POSITIVE_INT,
    "type_vocab_size": POSITIVE_INT,
    "initializer_range": Rule("number", minimum=0),
    "use_relative_position": Rule("bool"),
    "max_relative_position": POSITIVE_INT,
    "layer_norm_eps": Rule("number", minimum=0),
    "fit_size": Rule("int", minimum=1, nullable=True),
}
REQUIRED = ("vocab_size",)


def check_config(values: Mapping[str, Any], path: os.PathLike | str, text: Optional[str] = None,
                 required: Sequence[str] = REQUIRED) -> None:
    """Raise InputError (the config file, the key's line when `text`, the file's content, is given) for the
    first key of `values` that is missing, of the wrong type or out of range."""
    for key in required:
        if key not in values:
            raise InputError(f"the BERT config has no {key}", path)
    for key, rule in RULES.items():
        if key in values and not rule.accepts(values[key]):
            raise InputError(f"{key}: expected {rule.expected()}, found {json.dumps(values[key])}", path,
                             line_of(text, f'"{key}"'))
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if hidden is not None and heads is not None and hidden % heads:
        raise InputError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}", path,
                         line_of(text, '"num_attention_heads"'))


def check_vocab_fits(config_vocab_size: int, config_path: os.PathLike | str, vocab: Mapping[str, int],
                     vocab_path: os.PathLike | str) -> None:
    """Stop, naming both files, when the vocabulary (token -> id, as tokenization.load_vocab reads it) has
    ids past the end of the config's embedding table, which would index out of range inside the framework.
    A larger table is fine: padded vocabularies are common."""
    ids = max(vocab.values(), default=-1) + 1
    if ids > config_vocab_size:
        raise InputError(f"vocab_size {config_vocab_size} is too small: the vocabulary has {ids} tokens "
                         f"({os.fspath(vocab_path)}); use the vocab.txt the model was trained with, or a config "
                         "that matches it", config_path)
