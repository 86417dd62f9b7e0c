"""TinyBERT task distillation throughput: examples/s of stage 1 (intermediate layers) and stage 2 (--pred_distill).

The timed step is task_distill.py's own (distillation.task.distillation_loss, OptimizerStep, BertAdam): a 12x768 BERT
teacher forward under no_grad and a 4x312 TinyBERT student forward and backward, on real ChnSenti batches
(utils/prepare_data.py) featurized by task_distill's code at length 128, after one warm-up step. Weights are
random: the speed does not depend on them. fp32 everywhere; on a GPU also the --fp16 path (float16 autocast
and loss scaling). CPU bf16 is not timed (CPU bf16 matmuls are slow here, see ENVIRONMENT.md).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "TinyBERT")]

from bench_tinybert_inference import CONFIGS  # noqa: E402
from distillation.runtime import MixedPrecision, OptimizerStep, weight_decay_groups  # noqa: E402
from distillation.task import TaskModel, distillation_loss, eval_loader, tensor_data  # noqa: E402
from transformer.modeling import BertConfig, TinyBertForSequenceClassification  # noqa: E402
from transformer.optimization import BertAdam  # noqa: E402
from utils.tasks import get_processor  # noqa: E402
from utils.tokenization import FullTokenizer  # noqa: E402

VOCAB = ROOT / "NEZHA-TensorFlow" / "nezha" / "vocab.txt"
TEACHER, STUDENT = CONFIGS["bert_base"], CONFIGS["tinybert_4l_312"]
SEQ = 128


def chnsenti_batches(batch_size: int, count: int) -> list:
    """`count` batches of real ChnSenti training examples, featurized as task_distill.py does."""
    from utils.prepare_data import prepare_data

    with tempfile.TemporaryDirectory() as workdir:
        prepare_data(Path(workdir))
        data_dir = Path(workdir) / "chnsenti"
        processor = get_processor("text_clf")
        examples = processor.get_train_examples(data_dir)[: batch_size * count]
        tokenizer = FullTokenizer.from_pretrained(VOCAB, do_lower_case=True)
        return list(eval_loader(tensor_data(examples, processor, ["0", "1"], tokenizer, SEQ), batch_size))


def time_stage(student: TaskModel, teacher: TaskModel, batches: list, device: torch.device, pred_distill: bool,
               fp16: bool) -> dict:
    optimizer = BertAdam(weight_decay_groups(student.model), schedule="warmup_linear" if pred_distill else "none",
                         lr=5e-5, warmup=0.1, t_total=1000)
    precision = MixedPrecision(device, fp16)
    update = OptimizerStep(student.model, optimizer, precision, 1)

    def step(batch) -> float:
        loss, values = distillation_loss(student, teacher, batch, device, pred_distill, "classification", 1.0,
                                         precision)
        update.backward(loss)
        update.step()
        return values["loss"]

    step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[1:]:
        loss = step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    examples = sum(batch[0].size(0) for batch in batches[1:])
    return {"examples_per_s": round(examples / seconds, 2), "timed_steps": len(batches) - 1,
            "last_loss": round(loss, 4)}


def run(quick: bool = False) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    batch_size = 32 if on_gpu else 8
    steps = (10 if quick else 50) if on_gpu else (2 if quick else 6)
    batches = chnsenti_batches(batch_size, steps + 1)
    torch.manual_seed(0)
    vocab_size = sum(1 for _ in open(VOCAB, encoding="utf-8"))
    teacher = TaskModel(TinyBertForSequenceClassification(BertConfig(vocab_size, **TEACHER), num_labels=2), None, "")
    student = TaskModel(TinyBertForSequenceClassification(BertConfig(vocab_size, **STUDENT), num_labels=2,
                                                          fit_size=TEACHER["hidden_size"]), None, "")
    teacher.model.to(device).eval()
    student.model.to(device).train()
    result: dict = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "torch_threads": torch.get_num_threads(),
        "teacher": "12x768", "student": "4x312", "max_seq_length": SEQ, "batch_size": batch_size,
    }
    precisions = [False, True] if on_gpu else [False]
    for fp16 in precisions:
        suffix = "_fp16" if fp16 else ""
        for name, pred_distill in (("stage1_intermediate", False), ("stage2_pred_distill", True)):
            timing = time_stage(student, teacher, batches, device, pred_distill, fp16)
            result[f"{name}{suffix}_examples_per_s"] = timing["examples_per_s"]
            result["timed_steps"] = timing["timed_steps"]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
