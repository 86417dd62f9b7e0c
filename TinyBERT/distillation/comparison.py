"""How much smaller and faster a student is than its teacher, measured on real task inputs (compare_models.py).

Both models encode the same dev examples, batch by batch, alternating teacher and student so that a busy
machine slows both alike; the speed ratio is the ratio of their median batch times. Parameters count what
inference runs (embeddings, encoder, pooler, classifier); the student's fit_dense, used only in training,
is left out, as the paper's 14.5M for TinyBERT 4x312 does.
"""
from __future__ import annotations

import statistics
import time
from typing import Optional, Sequence

import torch

from transformer.modeling import TinyBertForSequenceClassification
from utils.features import encode_pair
from utils.tasks import get_processor
from utils.tokenization import BertTokenizer


def inference_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("fit_dense"))


def encode(texts: Sequence[tuple[str, Optional[str]]], tokenizer: BertTokenizer, max_seq_length: int) -> dict:
    """[CLS] a [SEP] (b [SEP]) ids (utils.features.encode_pair) cut to the longest example of the batch, as a
    deployment would; a b without tokens is left out."""
    pairs = [encode_pair(tokenizer.tokenize(a), (tokenizer.tokenize(b) or None) if b else None, max_seq_length,
                         tokenizer) for a, b in texts]
    width = max(len(pair.tokens) for pair in pairs)
    fields = {"input_ids": "input_ids", "token_type_ids": "segment_ids", "attention_mask": "input_mask"}
    return {name: torch.tensor([getattr(pair, field)[:width] for pair in pairs]) for name, field in fields.items()}


def compare(teacher_dir: str, student_dir: str, data_dir: str, task_name: str, max_seq_length: int,
            batch_size: int, max_batches: int, do_lower_case: bool) -> dict:
    processor = get_processor(task_name)
    num_labels = len(processor.get_labels(data_dir))
    examples = processor.get_dev_examples(data_dir)[: batch_size * max_batches]
    tokenizer = BertTokenizer.from_pretrained(student_dir, do_lower_case=do_lower_case)
    batches = [encode([(e.text_a, e.text_b) for e in examples[i:i + batch_size]], tokenizer, max_seq_length)
               for i in range(0, len(examples), batch_size)]
    models = {name: TinyBertForSequenceClassification.from_pretrained(path, num_labels=num_labels).eval()
              for name, path in (("teacher", teacher_dir), ("student", student_dir))}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.bert(**batches[0], output_all_encoded_layers=False, output_att=False)
        for batch in batches:
            for name, model in models.items():
                start = time.perf_counter()
                encoded = model.bert(**batch, output_all_encoded_layers=False, output_att=False)
                model.classifier(model.classifier_act(encoded.pooled_output))
                times[name].append(time.perf_counter() - start)
    result: dict = {"task_name": task_name, "examples": len(examples), "batch_size": batch_size,
                    "max_seq_length": max_seq_length, "torch_threads": torch.get_num_threads()}
    for name, model in models.items():
        median = statistics.median(times[name])
        result[f"{name}_parameters"] = inference_parameters(model)
        result[f"{name}_layers"] = model.config.num_hidden_layers
        result[f"{name}_hidden_size"] = model.config.hidden_size
        result[f"{name}_examples_per_second"] = round(batch_size / median, 1)
    result["parameter_ratio"] = round(result["teacher_parameters"] / result["student_parameters"], 2)
    result["speed_ratio"] = round(result["student_examples_per_second"] / result["teacher_examples_per_second"], 2)
    return result
