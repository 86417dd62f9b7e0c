"""Peak memory of both pretraining-data generators as the corpus grows.

utils/create_pretraining_data.py (NEZHA) works through the corpus in shards of --docs_per_shard documents;
TinyBERT/pregenerate_training_data.py keeps documents in SQLite on disk with --reduce_memory. Each is run
whole, in a fresh process, on the real Chinese corpus of utils/prepare_data.py once and repeated four
times, beside the original's way (one shard of the whole corpus; documents in memory): the peak RSS of
the bounded ways stays flat while the others grow with the corpus. A run on a few lines gives the start-up
floor (TensorFlow alone is most of it for create_pretraining_data). --dupe_factor is 1 to keep the runs
short; the original's 10 multiplies the instances that one shard (or the whole corpus) holds.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.prepare_data import prepare_data  # noqa: E402

VOCAB = ROOT / "NEZHA-TensorFlow" / "nezha" / "vocab.txt"
COPIES = (1, 4)
# Runs a script as __main__ with the given arguments, then prints its peak RSS in KiB: VmHWM, since
# getrusage's maxrss would include the RSS of the parent it was forked from.
PROBE = (
    "import runpy, sys\n"
    "script, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_path(script, run_name='__main__')\n"
    "except SystemExit as stop:\n"
    "    if stop.code not in (None, 0):\n"
    "        raise\n"
    "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])\n"
)


def peak_rss_mib(script: Path, arguments: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'TinyBERT'}{os.pathsep}{ROOT}")
    run = subprocess.run([sys.executable, "-c", PROBE, str(script), *arguments], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{run.stderr[-2000:]}")
    return round(int(run.stdout.strip().splitlines()[-1]) / 1024, 1)


def create_pretraining_data(corpus: Path, out: Path, docs_per_shard: int | None) -> float:
    arguments = [f"--input_file={corpus}", f"--output_file={out / 'records.tfrecord'}", f"--vocab_file={VOCAB}",
                 "--dupe_factor=1"]
    if docs_per_shard is not None:
        arguments.append(f"--docs_per_shard={docs_per_shard}")
    return peak_rss_mib(ROOT / "utils" / "create_pretraining_data.py", arguments)


def pregenerate(corpus: Path, out: Path, reduce_memory: bool) -> float:
    arguments = ["--train_corpus", str(corpus), "--bert_model", str(VOCAB), "--output_dir", str(out),
                 "--epochs_to_generate", "1", "--seed", "1", "--do_lower_case"]
    if reduce_memory:
        arguments.append("--reduce_memory")
    return peak_rss_mib(ROOT / "TinyBERT" / "pregenerate_training_data.py", arguments)


def corpora(quick: bool, workdir: Path) -> dict[str, Path]:
    """The floor corpus and the prepared corpus repeated COPIES times, keyed by their size in MiB."""
    prepare_data(workdir / "data")
    text = (workdir / "data" / "corpus" / "zh.txt").read_text(encoding="utf-8")
    if quick:
        text = "\n".join(text.splitlines()[:2000]) + "\n"
    paths = {"floor": workdir / "floor.txt"}
    paths["floor"].write_text("\n".join(text.splitlines()[:50]) + "\n", encoding="utf-8")
    for copies in COPIES:
        path = workdir / f"corpus_x{copies}.txt"
        path.write_text("\n".join([text] * copies), encoding="utf-8")
        paths[f"{path.stat().st_size / 2**20:.1f}MiB"] = path
    return paths


def run(quick: bool) -> dict:
    from utils.create_pretraining_data import DEFAULT_DOCS_PER_SHARD  # imports TensorFlow: only when run

    result: dict = {"dupe_factor": 1, "docs_per_shard": DEFAULT_DOCS_PER_SHARD}
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        paths = corpora(quick, workdir)
        nezha, tinybert = {}, {}
        for size, corpus in paths.items():
            out = workdir / f"out_{size}"
            for name, options in (("shards", None), ("whole_corpus", 0)):
                (out / name).mkdir(parents=True)
                nezha[f"peak_rss_mib_{name}_{size}"] = create_pretraining_data(corpus, out / name, options)
            for name, reduce_memory in (("reduce_memory", True), ("in_memory", False)):
                tinybert[f"peak_rss_mib_{name}_{size}"] = pregenerate(corpus, out / name, reduce_memory)
    result["create_pretraining_data"] = nezha
    result["pregenerate_training_data"] = tinybert
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2000-line corpus instead of the whole one")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
