"""TinyBERT's model package: BERT/NEZHA encoders, distillation heads, checkpoint formats, BertAdam, cached_path.

A PyTorch 2 rewrite of the original's fork of pytorch-pretrained-bert 0.6.2; the tokenizer lives in
utils/tokenization.py (shared with the NEZHA tree).
"""
from .file_utils import BERT_CONFIG_NAME, CONFIG_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME, cached_path
from .modeling import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    BertPreTrainedModel,
    TinyBertForPreTraining,
    TinyBertForQuestionAnswering,
    TinyBertForSequenceClassification,
    TinyBertForTokenClassification,
)
from .optimization import SCHEDULES, BertAdam

__all__ = [
    "BERT_CONFIG_NAME",
    "CONFIG_NAME",
    "SAFE_WEIGHTS_NAME",
    "WEIGHTS_NAME",
    "cached_path",
    "BertConfig",
    "BertForMaskedLM",
    "BertModel",
    "BertPreTrainedModel",
    "TinyBertForPreTraining",
    "TinyBertForQuestionAnswering",
    "TinyBertForSequenceClassification",
    "TinyBertForTokenClassification",
    "SCHEDULES",
    "BertAdam",
]
