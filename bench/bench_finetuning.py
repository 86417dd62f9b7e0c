"""Fine-tuning quality: a tiny NEZHA pretrained with run_pretraining.py against the same model from random weights.

The user's three scripts (run_clf.sh, run_seq_labelling.sh, run_reading.sh) run twice on the real sets of
utils/prepare_data.py, once with INIT_CHECKPOINT set to the pretrained checkpoint and once with
INIT_CHECKPOINT=none, with the same data, sizes, seed and learning rate. Recorded: ChnSenti dev accuracy and
People's Daily dev entity F1 (best evaluated checkpoint, as select_best.py picks it) and the reading set's
EM/F1 from the official evaluator, plus the pretraining run's masked-LM accuracy. The model is the demo's
2 x 128 NEZHA (bert_config_demo.json); CPU pretraining this short stays near the unigram stage, which is what
this benchmark measures the effect of.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.fileio import read_key_values  # noqa: E402

CONFIG = ROOT / "NEZHA-TensorFlow" / "nezha" / "bert_config_demo.json"
VOCAB = ROOT / "NEZHA-TensorFlow" / "nezha" / "vocab.txt"
SIZES = {  # quick / full
    "corpus_lines": (3000, 6000), "pretrain_steps": (60, 300), "clf_examples": (1500, 4000),
    "ner_examples": (1500, 4000), "reading_examples": (600, 2000), "eval_examples": (300, 500), "epochs": (2, 3),
}


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{result.stdout[-3000:]}")


def _best(history: Path, key: str) -> float:
    with open(history, encoding="utf-8") as handle:
        return max(json.loads(line)["metrics"][key] for line in handle if line.strip())


def _finetune(work: Path, data: Path, model_dir: Path, init: str, size: dict[str, int], env: dict[str, str]) -> dict:
    common = dict(env, MODEL_DIR=str(model_dir), INIT_CHECKPOINT=init, NUM_TRAIN_EPOCHS=str(size["epochs"]),
                  LEARNING_RATE="5e-4", MAX_EVAL_EXAMPLES=str(size["eval_examples"]))
    out = work / ("pretrained" if init != "none" else "random")
    _run(["bash", "scripts/run_clf.sh"], dict(common, TASK_NAME="text_clf", DATA_DIR=str(data / "chnsenti"),
                                            OUTPUT_DIR=str(out / "clf"), MAX_SEQ_LENGTH="32", TRAIN_BATCH_SIZE="16",
                                            SAVE_CHECKPOINTS_STEPS="100",
                                            MAX_TRAIN_EXAMPLES=str(size["clf_examples"])))
    _run(["bash", "scripts/run_seq_labelling.sh"],
         dict(common, DATA_DIR=str(data / "peoples_daily_ner"), OUTPUT_DIR=str(out / "ner"), MAX_SEQ_LENGTH="64",
              SAVE_CHECKPOINTS_STEPS="100", MAX_TRAIN_EXAMPLES=str(size["ner_examples"]),
              MAX_PREDICT_EXAMPLES=str(size["eval_examples"])))
    _run(["bash", "scripts/run_reading.sh"],
         dict(common, DATA_DIR=str(data / "cmrc"), OUTPUT_DIR=str(out / "cmrc"), MAX_SEQ_LENGTH="256",
              TRAIN_BATCH_SIZE="16", MAX_TRAIN_EXAMPLES=str(size["reading_examples"])))
    reading = json.loads((out / "cmrc" / "result_metric.txt").read_text(encoding="utf-8"))
    return {"chnsenti_dev_accuracy": round(_best(out / "clf" / "eval" / "eval_history.jsonl", "eval_accuracy"), 4),
            "ner_dev_entity_f1": round(_best(out / "ner" / "eval" / "eval_history.jsonl", "eval_entity_f1"), 4),
            "reading_dev_em": float(reading["EM"]), "reading_dev_f1": float(reading["F1"])}


def run(quick: bool = False) -> dict[str, Any]:
    size = {key: values[0 if quick else 1] for key, values in SIZES.items()}
    env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        _run([sys.executable, "utils/prepare_data.py", "--output_dir", str(data)], env)
        corpus = work / "corpus.txt"
        with open(data / "corpus" / "zh.txt", encoding="utf-8") as source, open(corpus, "w", encoding="utf-8") as sink:
            for number, line in enumerate(source):
                if number >= size["corpus_lines"]:
                    break
                sink.write(line)
        records = work / "corpus.tfrecord"
        _run([sys.executable, "utils/create_pretraining_data.py", f"--input_file={corpus}",
              f"--output_file={records}", f"--vocab_file={VOCAB}", "--do_whole_word_mask=true",
              "--max_seq_length=64", "--max_predictions_per_seq=10", "--dupe_factor=2"], env)
        steps = size["pretrain_steps"]
        _run([sys.executable, "NEZHA-TensorFlow/run_pretraining.py", f"--input_file={records}",
              f"--output_dir={work / 'pretrain'}", "--do_train=true", "--do_eval=true",
              f"--bert_config_file={CONFIG}", "--train_batch_size=32", "--eval_batch_size=32",
              "--max_seq_length=64", "--max_predictions_per_seq=10", f"--num_train_steps={steps}",
              f"--num_warmup_steps={steps // 10}", "--learning_rate=1e-3", f"--save_checkpoints_steps={steps}",
              "--max_eval_steps=20", "--use_xla=true"], env)
        pretrain = read_key_values(work / "pretrain" / "eval_results.txt")
        model_dir = work / "model"
        model_dir.mkdir()
        (model_dir / "bert_config.json").write_bytes(CONFIG.read_bytes())
        (model_dir / "vocab.txt").write_bytes(VOCAB.read_bytes())
        pretrained = _finetune(work, data, model_dir, str(work / "pretrain" / f"model.ckpt-{steps}"), size, env)
        random_init = _finetune(work, data, model_dir, "none", size, env)
    return {"model": "NEZHA 2x128 (bert_config_demo.json)", "sizes": size,
            "pretraining_masked_lm_accuracy": round(float(pretrain["masked_lm_accuracy"]), 4),
            "from_pretrained": pretrained, "from_random": random_init}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
