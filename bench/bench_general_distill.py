"""TinyBERT general distillation: pregeneration speed (1 vs 2 workers) and distillation throughput and peak memory.

Pregeneration runs on the real Chinese corpus of utils/prepare_data.py (its first lines), with the original's
defaults at length 128; its peak memory as the corpus grows is bench_corpus_memory.py's. Distillation times
the training step of general_distill.py (a 12x768 BERT teacher forward under no_grad, a 4x312 TinyBERT student
forward and backward, the BertAdam step) at length 128 on random token ids, after one warm-up step; fp32, and
bf16 autocast only on a GPU (CPU bf16 matmuls are slow).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "TinyBERT")]

from bench_tinybert_inference import CONFIGS  # noqa: E402
from distillation.general import distillation_losses, freeze_unused  # noqa: E402
from distillation.pregenerated import DocumentDatabase, GenerationOptions, generate_epochs, load_corpus  # noqa: E402
from distillation.runtime import weight_decay_groups  # noqa: E402
from transformer.modeling import BertConfig, BertModel, TinyBertForPreTraining  # noqa: E402
from transformer.optimization import BertAdam  # noqa: E402
from utils.tokenization import BertTokenizer  # noqa: E402

VOCAB = ROOT / "NEZHA-TensorFlow" / "nezha" / "vocab.txt"
TEACHER, STUDENT = CONFIGS["bert_base"], CONFIGS["tinybert_4l_312"]
SEQ = 128


def write_corpus(lines: list[str], path: Path) -> Path:
    """The first lines of the corpus, cut at a document break."""
    lines = list(lines)
    while lines and lines[-1].strip():
        lines.pop()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pregeneration(quick: bool, workdir: Path) -> dict:
    from utils.prepare_data import prepare_data

    prepare_data(workdir / "data")
    all_lines = (workdir / "data" / "corpus" / "zh.txt").read_text(encoding="utf-8").splitlines()
    corpus = write_corpus(all_lines[: 4000 if quick else 20000], workdir / "corpus.txt")
    lines = corpus.read_text(encoding="utf-8").splitlines()
    tokenizer = BertTokenizer.from_pretrained(VOCAB, do_lower_case=True)
    options = GenerationOptions(max_seq_len=SEQ)
    result: dict = {"corpus_lines": len(lines), "epochs": 2}
    with DocumentDatabase() as docs:
        load_corpus(corpus, tokenizer, docs)
        result["documents"] = len(docs)
        for workers in (1, 2):
            out = workdir / f"pregenerated_{workers}"
            out.mkdir()
            start = time.perf_counter()
            counts = generate_epochs(docs, list(tokenizer.vocab), options, out, 2, seed=1, num_workers=workers)
            seconds = time.perf_counter() - start
            result[f"instances_per_s_{workers}_workers"] = round(sum(counts) / seconds, 1)
        result["instances_per_epoch"] = counts[0]
    result["speedup_2_workers"] = round(result["instances_per_s_2_workers"] / result["instances_per_s_1_workers"], 2)
    return result


def distillation(quick: bool, device: torch.device, bf16: bool) -> dict:
    torch.manual_seed(0)
    vocab_size = 21128
    teacher = BertModel(BertConfig(vocab_size, **TEACHER)).to(device).eval()
    student = TinyBertForPreTraining(BertConfig(vocab_size, **STUDENT), fit_size=768)
    freeze_unused(student)
    student.to(device).train()
    optimizer = BertAdam(weight_decay_groups(student), lr=5e-5, warmup=0.1, t_total=1000)
    batch = 8 if device.type == "cpu" else 64
    steps = (2 if quick else 6) if device.type == "cpu" else (10 if quick else 50)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab_size, (batch, SEQ), generator=generator).to(device)
    segment_ids = torch.zeros_like(input_ids)
    mask = torch.ones_like(input_ids)
    mask[: batch // 2, SEQ * 3 // 4:] = 0
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        att, rep = distillation_losses(student, teacher, input_ids, segment_ids, mask, autocast)
        (att + rep).backward()
        optimizer.step()
        optimizer.zero_grad()
        return (att + rep).item()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "batch_size": batch,
        "timed_steps": steps,
        "steps_per_s": round(steps / seconds, 3),
        "examples_per_s": round(steps * batch / seconds, 2),
        "last_loss": round(loss, 4),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def run(quick: bool) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "seq_length": SEQ,
        "teacher": "12x768 BERT",
        "student": "4x312 TinyBERT",
    }
    with tempfile.TemporaryDirectory() as workdir:
        result["pregeneration"] = pregeneration(quick, Path(workdir))
    result["distillation_fp32"] = distillation(quick, device, bf16=False)
    if device.type == "cuda":
        result["distillation_bf16"] = distillation(quick, device, bf16=True)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller corpus and fewer timed steps")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
