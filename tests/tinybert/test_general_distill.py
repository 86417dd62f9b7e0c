"""general_distill.py: losses against NumPy, learning from real teachers and real text, exact resume after
kill -9, torchrun DDP equal to one process with the doubled batch, teacher formats, bf16, clear errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import general_distill
from distillation.general import distillation_losses
from distillation.pregenerated import (DocumentDatabase, GenerationOptions, PregeneratedDataset, create_training_file,
                                      load_corpus)
from transformer.checkpoints import export_config, write_model_directory
from transformer.modeling import BertConfig, BertModel, TinyBertForPreTraining, TinyBertForSequenceClassification
from utils.errors import InputError
from utils.tokenization import BertTokenizer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "TinyBERT" / "general_distill.py"
SEQ = 32


def subprocess_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("LOCAL_RANK", None)
    return env


def student_dir(path: Path, dropout: float = 0.0, layers: int = 2, hidden: int = 32, heads: int = 4,
                vocab_size: int = 21128) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=2 * hidden, max_position_embeddings=64, hidden_act="gelu",
                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, type_vocab_size=2,
                  initializer_range=0.02)
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def pregenerate(corpus: Path, vocab: Path, out: Path, seed: int = 1) -> Path:
    tokenizer = BertTokenizer.from_pretrained(vocab, do_lower_case=True)
    out.mkdir(parents=True, exist_ok=True)
    with DocumentDatabase() as docs:
        load_corpus(corpus, tokenizer, docs)
        create_training_file(docs, list(tokenizer.vocab), GenerationOptions(max_seq_len=SEQ, masked_lm_prob=0.15),
                             out, 0, seed)
    return out


def subset(data: Path, out: Path, count: int) -> Path:
    """The first `count` instances of data's epoch 0, as an epoch directory of its own."""
    out.mkdir(parents=True, exist_ok=True)
    lines = (data / "epoch_0.json").read_text(encoding="utf-8").splitlines()[:count]
    assert len(lines) == count
    (out / "epoch_0.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "epoch_0_metrics.json").write_text(json.dumps({"num_training_examples": count, "max_seq_len": SEQ}))
    return out


@pytest.fixture(scope="module")
def zh_data(prepared_data: Path, nezha_vocab: Path, tmp_path_factory) -> Path:
    """Instances of length 32 from the start of the real Chinese corpus (a few hundred)."""
    lines = (prepared_data / "corpus" / "zh.txt").read_text(encoding="utf-8").splitlines()[:300]
    corpus = tmp_path_factory.mktemp("zh_corpus") / "zh.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pregenerate(corpus, nezha_vocab, tmp_path_factory.mktemp("zh_data"))


@pytest.fixture(scope="module")
def tiny_teacher(nezha_vocab: Path, tmp_path_factory) -> Path:
    """A 4-layer, 64-wide BERT over the Chinese vocabulary, written by save_pretrained (wide init: larger scores)."""
    torch.manual_seed(0)
    config = BertConfig(21128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=64, initializer_range=0.1)
    path = tmp_path_factory.mktemp("tiny_teacher")
    BertModel(config).save_pretrained(path, nezha_vocab)
    return path


def args_for(data: Path, teacher: Path, student: Path, out: Path, *extra: str) -> list[str]:
    return ["--pregenerated_data", str(data), "--teacher_model", str(teacher), "--student_model", str(student),
            "--output_dir", str(out), "--do_lower_case", *extra]


def held_out_losses(student: TinyBertForPreTraining, teacher: BertModel, data: Path, tokenizer) -> tuple[float, float]:
    dataset = PregeneratedDataset(data, 0, tokenizer, 1, show_progress=False)
    input_ids, input_mask, segment_ids, _, _ = (torch.stack(column) for column in zip(*[dataset[i] for i in range(64)]))
    student.eval()
    teacher.eval()
    with torch.no_grad():
        att, rep = distillation_losses(student, teacher, input_ids, segment_ids, input_mask)
    return att.item(), rep.item()


def numpy_losses(student_atts, student_reps, teacher_atts, teacher_reps) -> tuple[float, float]:
    """The paper's losses written out by hand for 4 teacher and 2 student layers."""
    def zeroed(x):
        x = x.detach().double().numpy()
        return np.where(x <= -100.0, 0.0, x)

    att = sum(np.mean((zeroed(student_atts[i]) - zeroed(teacher_atts[t])) ** 2) for i, t in ((0, 1), (1, 3)))
    rep = sum(np.mean((student_reps[i].detach().double().numpy() - teacher_reps[t].detach().double().numpy()) ** 2)
              for i, t in ((0, 0), (1, 2), (2, 4)))
    return att, rep


def test_losses_equal_a_numpy_computation_and_teacher_gets_no_gradient():
    torch.manual_seed(3)
    teacher = BertModel(BertConfig(50, hidden_size=24, num_hidden_layers=4, num_attention_heads=3,
                                   intermediate_size=40, initializer_range=0.3))
    student = TinyBertForPreTraining(BertConfig(50, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                                                intermediate_size=20, hidden_dropout_prob=0.0,
                                                attention_probs_dropout_prob=0.0), fit_size=24)
    teacher.eval()
    input_ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones_like(input_ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    segments = (torch.arange(9) > 4).long().expand(3, 9)
    att, rep = distillation_losses(student, teacher, input_ids, segments, mask)
    (att + rep).backward()
    student_atts, student_reps = student(input_ids, segments, mask)
    teacher_out = teacher(input_ids, segments, mask)
    teacher_reps, teacher_atts = teacher_out.hidden_states, teacher_out.attentions
    assert (teacher_atts[1][2, :, :, 3:] <= -100).all()  # masked keys are in the zeroed range
    expected_att, expected_rep = numpy_losses(student_atts, student_reps, teacher_atts, teacher_reps)
    assert att.item() == pytest.approx(expected_att, rel=1e-5)
    assert rep.item() == pytest.approx(expected_rep, rel=1e-5)
    assert all(p.grad is None for p in teacher.parameters())
    assert student.fit_dense.weight.grad is not None and student.bert.embeddings.word_embeddings.weight.grad is not None


def test_tiny_student_learns_from_tiny_teacher_on_the_chinese_corpus(zh_data, tiny_teacher, tmp_path):
    out = tmp_path / "out"
    general_distill.main(args_for(zh_data, tiny_teacher, student_dir(tmp_path / "student", dropout=0.1), out,
                                  "--train_batch_size", "16", "--learning_rate", "5e-3", "--num_train_epochs", "3",
                                  "--eval_step", "20"))
    names = {p.name for p in out.iterdir()}
    assert {"pytorch_model.bin", "config.json", "vocab.txt", "log.txt", "training_state.pt",
            "step_19_pytorch_model.bin"} <= names
    log = (out / "log.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(" = ")[0] for line in log[:4]] == ["att_loss", "global_step", "loss", "rep_loss"]
    tokenizer = BertTokenizer.from_pretrained(tiny_teacher, do_lower_case=True)
    teacher = BertModel.from_pretrained(tiny_teacher)
    torch.manual_seed(0)
    before = held_out_losses(TinyBertForPreTraining.from_scratch(tmp_path / "student", fit_size=64), teacher,
                             zh_data, tokenizer)
    after = held_out_losses(TinyBertForPreTraining.from_pretrained(out), teacher, zh_data, tokenizer)
    assert after[0] < 0.8 * before[0] and after[1] < 0.5 * before[1], (before, after)
    # what task_distill.py loads: the encoder and fit_dense come back as trained
    classifier = TinyBertForSequenceClassification.from_pretrained(out, num_labels=2)
    trained = torch.load(out / "pytorch_model.bin", weights_only=True)
    for key, value in classifier.state_dict().items():
        if key.startswith(("bert.encoder", "bert.embeddings", "fit_dense")):
            assert torch.equal(value, trained[key]), key


def english_corpus(path: Path) -> Path:
    """Real English prose shipped with Python: the reference manual's topics (pydoc_data), one document each."""
    from pydoc_data.topics import topics

    documents = []
    for name in sorted(topics)[:40]:
        lines = [line.strip() for line in topics[name].splitlines() if len(line.split()) >= 6][:12]
        if len(lines) >= 2:
            documents.append("\n".join(lines))
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


def test_two_layer_student_learns_from_real_minilm_on_english_text(minilm_dir, tmp_path):
    data = pregenerate(english_corpus(tmp_path / "en.txt"), minilm_dir, tmp_path / "data")
    assert 200 < json.loads((data / "epoch_0_metrics.json").read_text())["num_training_examples"]
    student = student_dir(tmp_path / "student", dropout=0.1, layers=2, hidden=48, heads=12, vocab_size=30522)
    out = tmp_path / "out"
    general_distill.main(args_for(data, minilm_dir, student, out, "--train_batch_size", "16",
                                  "--learning_rate", "5e-3", "--num_train_epochs", "2", "--eval_step", "1000"))
    tokenizer = BertTokenizer.from_pretrained(minilm_dir, do_lower_case=True)
    teacher = BertModel.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    before = held_out_losses(TinyBertForPreTraining.from_scratch(student, fit_size=384), teacher, data, tokenizer)
    after = held_out_losses(TinyBertForPreTraining.from_pretrained(out), teacher, data, tokenizer)
    assert after[0] < 0.6 * before[0] and after[1] < 0.8 * before[1], (before, after)


def test_continue_train_after_kill_9_ends_with_the_uninterrupted_weights(zh_data, tiny_teacher, tmp_path):
    data = subset(zh_data, tmp_path / "data", 96)
    student = student_dir(tmp_path / "student", dropout=0.1)  # dropout on: the masks must match too
    common = ["--train_batch_size", "8", "--learning_rate", "1e-3", "--num_train_epochs", "2", "--eval_step", "3"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(SCRIPT), *args_for(data, tiny_teacher, student, killed, *common)],
                               env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = killed / "training_state.pt"
    deadline = time.time() + 120
    while not state_file.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    saved_step = torch.load(state_file, weights_only=True)["progress"]["global_step"]
    assert 0 < saved_step < 24  # 2 epochs x 12 steps planned

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the killed process
    try:
        general_distill.main(args_for(data, tiny_teacher, killed, killed, "--continue_train", *common))
        full = tmp_path / "full"
        general_distill.main(args_for(data, tiny_teacher, student, full, *common))
    finally:
        torch.set_num_threads(threads)
    resumed_state = torch.load(killed / "training_state.pt", weights_only=True)
    assert resumed_state["progress"]["global_step"] == 24
    resumed = torch.load(killed / "pytorch_model.bin", weights_only=True)
    uninterrupted = torch.load(full / "pytorch_model.bin", weights_only=True)
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key  # bit-identical at the same thread count
    # saves after steps 2, 5, 8, ... ((step + 1) % 3 == 0, as the original) and at each epoch's end (12, 24)
    names = {p.name for p in killed.iterdir()}
    assert {"step_20_pytorch_model.bin", "step_23_pytorch_model.bin", "step_24_pytorch_model.bin"} <= names


RANK_WRAPPER = """
import os, sys, torch
sys.path.insert(0, {tinybert!r})
import general_distill
from distillation import general
result = general.train(general_distill.parse_args(sys.argv[1:]))
torch.save(result.student.state_dict(), os.path.join({out!r}, "rank%s.pt" % os.environ["RANK"]))
"""


def test_torchrun_two_processes_match_one_process_with_the_doubled_batch(zh_data, tiny_teacher, tmp_path):
    data = subset(zh_data, tmp_path / "data", 96)
    student = student_dir(tmp_path / "student", dropout=0.0)
    common = ["--learning_rate", "2e-3", "--num_train_epochs", "1", "--eval_step", "1000"]
    wrapper = tmp_path / "rank_wrapper.py"
    wrapper.write_text(RANK_WRAPPER.format(tinybert=str(ROOT / "TinyBERT"), out=str(tmp_path)), encoding="utf-8")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(wrapper),
               *args_for(data, tiny_teacher, student, tmp_path / "ddp", "--train_batch_size", "4", *common)]
    run = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    general_distill.main(args_for(data, tiny_teacher, student, tmp_path / "single", "--train_batch_size", "8", *common))
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = torch.load(tmp_path / "single" / "pytorch_model.bin", weights_only=True)
    saved = torch.load(tmp_path / "ddp" / "pytorch_model.bin", weights_only=True)
    initial = TinyBertForPreTraining.from_scratch(student, fit_size=64).state_dict()
    for key in single:
        assert torch.equal(rank0[key], rank1[key]), key  # the replicas never drift apart
        assert torch.equal(saved[key], rank0[key]), key
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.allclose(single["fit_dense.weight"], initial["fit_dense.weight"])
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["fit_size"] == 64


def test_nezha_teacher_in_the_converted_layout_bf16_accumulation_reduce_memory(zh_data, nezha_vocab, tmp_path):
    config = BertConfig(21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, hidden_act="gelu_new")
    config.use_relative_position = True
    config.max_relative_position = 16
    teacher = tmp_path / "nezha_teacher"
    # what convert_nezha_checkpoint.py writes: TF names read as bert.*, saved under Hugging Face's nezha. prefix
    encoder = {"bert." + key: value for key, value in BertModel(config).state_dict().items()}
    write_model_directory(teacher, encoder, export_config(config.to_dict(), "NezhaModel"), nezha_vocab)
    assert any(k.startswith("nezha.") for k in torch.load(teacher / "pytorch_model.bin", weights_only=True))
    out = tmp_path / "out"
    general_distill.main(args_for(subset(zh_data, tmp_path / "data", 32), teacher,
                                  student_dir(tmp_path / "student", layers=1, hidden=16), out,
                                  "--train_batch_size", "8", "--gradient_accumulation_steps", "2", "--fp16",
                                  "--reduce_memory", "--num_train_epochs", "1", "--eval_step", "2"))
    log = (out / "log.txt").read_text(encoding="utf-8")
    assert "global_step = 1\n" in log and "global_step = 3\n" in log
    assert all(np.isfinite(float(line.split(" = ")[1])) for line in log.splitlines())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # memmaps and temporaries are gone
    assert torch.load(out / "training_state.pt", weights_only=True)["progress"]["global_step"] == 4


@pytest.mark.parametrize("case, expected", [
    ("no_data", "no training data was found"),
    ("layers", "not a multiple of the student's 3"),
    ("vocab", "vocab_size 1000 differs"),
    ("heads", "attention heads"),
    ("not_empty", "not empty"),
])
def test_bad_input_stops_with_one_clear_message(case, expected, zh_data, tiny_teacher, tmp_path, capsys):
    data, out = zh_data, tmp_path / "out"
    student = {"layers": dict(layers=3), "vocab": dict(vocab_size=1000), "heads": dict(heads=2)}.get(case, {})
    student = student_dir(tmp_path / "student", **student)
    if case == "no_data":
        data = tmp_path / "empty"
        data.mkdir()
    if case == "not_empty":
        out.mkdir()
        (out / "something.txt").write_text("x")
    with pytest.raises(SystemExit) as stop:
        general_distill.main(args_for(data, tiny_teacher, student, out, "--num_train_epochs", "1"))
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert expected in error and "Traceback" not in error


def test_pregenerated_dataset_features_and_memmaps(tmp_path, nezha_vocab):
    tokenizer = BertTokenizer.from_pretrained(nezha_vocab)
    data = tmp_path / "data"
    data.mkdir()
    instances = [
        {"tokens": ["[CLS]", "中", "[MASK]", "[SEP]", "人", "[SEP]"], "segment_ids": [0, 0, 0, 0, 1, 1],
         "is_random_next": True, "masked_lm_positions": [2], "masked_lm_labels": ["国"]},
        {"tokens": ["[CLS]", "的", "[SEP]", "了", "[SEP]"], "segment_ids": [0, 0, 0, 1, 1],
         "is_random_next": False, "masked_lm_positions": [1, 3], "masked_lm_labels": ["的", "是"]},
    ]
    (data / "epoch_0.json").write_text("".join(json.dumps(i) + "\n" for i in instances), encoding="utf-8")
    (data / "epoch_0_metrics.json").write_text(json.dumps({"num_training_examples": 2, "max_seq_len": 8}))
    ids = tokenizer.vocab
    in_memory = PregeneratedDataset(data, 0, tokenizer, 1, show_progress=False)
    on_disk = PregeneratedDataset(data, 3, tokenizer, 1.0, reduce_memory=True, working_dir=tmp_path / "work",
                                  show_progress=False)  # training epoch 3 reads data epoch 3 % 1 = 0
    assert [p.suffix for p in next((tmp_path / "work").iterdir()).iterdir()] == [".memmap"] * 5
    input_ids, mask, segments, labels, is_next = in_memory[0]
    assert input_ids.tolist() == [ids[t] for t in instances[0]["tokens"]] + [0, 0]
    assert mask.tolist() == [1] * 6 + [0, 0] and segments.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert labels.tolist() == [-1, -1, ids["国"], -1, -1, -1, -1, -1] and is_next.item() == 1
    assert in_memory[1][3].tolist() == [-1, ids["的"], -1, ids["是"], -1, -1, -1, -1] and in_memory[1][4].item() == 0
    for index in range(2):
        for a, b in zip(in_memory[index], on_disk[index]):
            assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
    on_disk.close()
    assert list((tmp_path / "work").iterdir()) == []
    (data / "epoch_0.json").write_text(json.dumps(instances[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        PregeneratedDataset(data, 0, tokenizer, 1, show_progress=False)
    assert f"{data / 'epoch_0.json'}:2: not a JSON instance" in str(error.value)


def test_general_distill_script_stops_clearly_without_data_or_teacher(zh_data, tmp_path):
    script = str(ROOT / "scripts" / "general_distill.sh")
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "PREGENERATED": str(tmp_path / "none")}
    run = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "run scripts/pregenerate.sh first" in run.stderr
    assert run.stderr.startswith(f"error: {tmp_path / 'none' / 'epoch_0.json'}: ") and run.stderr.count("\n") == 1
    env.update(PREGENERATED=str(zh_data), TEACHER=str(tmp_path / "no_teacher"))
    run = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "convert_nezha_checkpoint.py" in run.stderr and "no_teacher" in run.stderr
    assert run.stderr.startswith(f"error: {tmp_path / 'no_teacher'}: ")
