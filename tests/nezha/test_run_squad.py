"""run_squad.py and squad_data.py: character tokenization, answer location, doc_stride windows with unique
max-context, n-best post-processing from hand-made logits, a tiny NEZHA that learns the real CMRC-style set,
the script and bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import squad_data
from utils import cmrc2018_evaluate
from utils.errors import InputError
from utils.fileio import read_key_values
from utils.tasks import Answer, SquadExample, read_squad_file

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "NEZHA-TensorFlow" / "run_squad.py"
TINY_CONFIG = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 512,
    "num_attention_heads": 4, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 21128,
    "use_relative_position": True,
}
CONTEXT = "1998年1月，江泽民主席在北京会见了Bill Gates先生。双方就合作交换了意见。"


def env() -> dict[str, str]:
    values = dict(os.environ, OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="2", TF_NUM_INTEROP_THREADS="1",
                  TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable)
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), values.get("PYTHONPATH")]))
    return values


@pytest.fixture(scope="module")
def tokenizer(nezha_vocab: Path) -> squad_data.ChineseFullTokenizer:
    return squad_data.ChineseFullTokenizer(str(nezha_vocab))


def example(answer: str, start, qas_id: str = "q", question: str = "谁在北京会见了比尔？") -> SquadExample:
    return SquadExample(qas_id, question, CONTEXT, [Answer(answer, start)])


def answer_text(converted: squad_data.ConvertedExamples, feature: squad_data.SquadFeature) -> str:
    doc = converted.docs[feature.example_index]
    start = doc.token_spans[feature.token_to_doc[feature.start_position]][0]
    end = doc.token_spans[feature.token_to_doc[feature.end_position]][1]
    return converted.examples[feature.example_index].context[start:end]


# ------------------------------------------------------------------------------------------------ tokenization

def test_customize_tokenizer_splits_cjk_punctuation_and_keeps_latin_words():
    assert squad_data.customize_tokenizer("江泽民，Bill Gates!") == ["江", "泽", "民", "，", "Bill", "Gates", "!"]
    assert squad_data.customize_tokenizer("Bill 1998年", do_lower_case=True) == ["bill", "1998", "年"]


def test_words_are_customize_tokenizers_with_their_characters(prepared_data):
    contexts = [e.context for e in read_squad_file(prepared_data / "cmrc" / "dev.json")[:200]]
    for context in contexts + [CONTEXT, " 前导 空格\tand\u3000tabs ", "\u200b零宽"]:
        words, spans = squad_data.split_words(context)
        assert words == squad_data.customize_tokenizer(context)
        assert [context[a:b] for a, b in spans] == words


def test_answer_start_of_an_answer_with_outer_spaces():
    context = "会见了 江泽民 主席"
    found = squad_data.locate_answer(SquadExample("q", "谁？", context, [Answer(" 江泽民 ", 3)]))
    assert found == (4, 7, True)
    found = squad_data.locate_answer(SquadExample("q", "谁？", context, [Answer("主席", None)]))
    assert found == (8, 10, False)
    assert squad_data.locate_answer(SquadExample("q", "谁？", context, [Answer("  ", 0)])) is None
    assert squad_data.locate_answer(SquadExample("q", "谁？", context, [])) is None


def test_every_token_keeps_its_characters(tokenizer, nezha_vocab):
    doc = squad_data.tokenize_context(CONTEXT, tokenizer)
    assert doc.tokens[:6] == ["1998", "年", "1", "月", "，", "江"]
    # "Bill" is [UNK] in the lower-cased Chinese vocabulary: the token spans the whole word.
    unk = doc.tokens.index("[UNK]")
    assert CONTEXT[slice(*doc.token_spans[unk])] == "Bill"
    for token, (start, end) in zip(doc.tokens, doc.token_spans):
        if token != "[UNK]":
            assert CONTEXT[start:end] == token.removeprefix("##")
    lowered = squad_data.tokenize_context(CONTEXT, squad_data.ChineseFullTokenizer(str(nezha_vocab), True))
    assert "bill" in lowered.tokens
    assert CONTEXT[slice(*lowered.token_spans[lowered.tokens.index("bill")])] == "Bill"


# ------------------------------------------------------------------------------------------------ answers

def test_answer_maps_to_its_token_span_and_back_to_the_exact_text(tokenizer):
    examples = [example("江泽民", CONTEXT.index("江泽民"), "a"),
                example("Bill Gates", CONTEXT.index("Bill"), "b"),
                example("北京", 99, "c"),                       # wrong answer_start: found by text search
                example("上海", 3, "d")]                        # not in the context: skipped and counted
    converted = squad_data.convert_examples_to_features(examples, tokenizer, 64, 128, 64, is_training=True)
    stats = converted.stats
    assert (stats.by_answer_start, stats.by_search, stats.not_found, stats.skipped_ids) == (2, 1, 1, ["d"])
    assert [e.qas_id for e in converted.examples] == ["a", "b", "c"]
    by_id = {converted.examples[f.example_index].qas_id: f for f in converted.features}
    a = by_id["a"]
    assert a.tokens[a.start_position:a.end_position + 1] == ["江", "泽", "民"]
    assert answer_text(converted, a) == "江泽民"
    b = by_id["b"]
    assert b.tokens[b.start_position:b.end_position + 1] == ["[UNK]", "[UNK]"]
    assert answer_text(converted, b) == "Bill Gates"          # the inner space is kept
    assert answer_text(converted, by_id["c"]) == "北京"
    # [CLS] question [SEP] context [SEP]: segments 0/1, span mask on [CLS] and the context only.
    n_question = len(tokenizer.tokenize(examples[0].question))
    assert a.tokens[0] == "[CLS]" and a.tokens[n_question + 1] == "[SEP]"
    length = sum(a.input_mask)
    assert a.tokens[length - 1] == "[SEP]" and len(a.input_ids) == 64
    assert a.segment_ids[:n_question + 2] == [0] * (n_question + 2)
    assert a.segment_ids[n_question + 2:length] == [1] * (length - n_question - 2)
    assert a.input_span_mask[:length] == [1] + [0] * (n_question + 1) + [1] * (length - n_question - 3) + [0]
    assert sum(a.input_span_mask[length:]) == 0


def test_windows_cover_every_token_and_max_context_is_unique():
    for num_tokens, window, stride in [(1, 5, 2), (10, 4, 1), (23, 7, 3), (50, 8, 8), (50, 8, 20), (9, 9, 4)]:
        spans = squad_data.doc_spans(num_tokens, window, stride)
        covered = sorted({s.start + i for s in spans for i in range(s.length)})
        assert covered == list(range(num_tokens))
        assert spans[-1].start + spans[-1].length == num_tokens
        for position in range(num_tokens):
            owners = [k for k in range(len(spans)) if squad_data.is_max_context(spans, k, position)]
            assert len(owners) == 1
            span = spans[owners[0]]
            assert span.start <= position < span.start + span.length


def test_real_contexts_in_small_windows(prepared_data, tokenizer):
    examples = read_squad_file(prepared_data / "cmrc" / "train.json")[:60]
    converted = squad_data.convert_examples_to_features(examples, tokenizer, 48, 16, 20, is_training=True)
    assert converted.stats.not_found == 0 and len(converted.examples) == 60
    owners = {}
    found = set()
    for feature in converted.features:
        for position, doc_index in feature.token_to_doc.items():
            if feature.token_is_max_context[position]:
                key = (feature.example_index, doc_index)
                assert key not in owners
                owners[key] = feature.unique_id
        if feature.start_position:
            assert answer_text(converted, feature) == converted.examples[feature.example_index].answers[0].text
            found.add(feature.example_index)
        else:
            assert feature.end_position == 0
    for index, doc in enumerate(converted.docs):
        assert all((index, t) in owners for t in range(len(doc.tokens)))
    assert found == set(range(60))                 # every answer lies whole in at least one window
    assert len(converted.features) > 2 * len(converted.examples)
    arrays = squad_data.feature_arrays(converted.features, is_training=True)
    assert arrays["input_ids"].shape == (len(converted.features), 48)
    assert arrays["unique_ids"][0] == squad_data.UNIQUE_ID_START


# ------------------------------------------------------------------------------------------------ post-processing

def test_nbest_from_hand_made_logits(tokenizer):
    examples = [example("江泽民", None, "a"), example("北京", None, "b"), example("x", None, "c")]
    converted = squad_data.convert_examples_to_features(examples, tokenizer, 64, 128, 64, is_training=False)
    assert len(converted.features) == 3
    start = np.full((3, 64), -20.0)
    end = np.full((3, 64), -20.0)
    a = converted.features[0]
    pos = {text: next(p for p, d in a.token_to_doc.items() if a.tokens[p] == text) for text in ["江", "民", "北"]}
    start[0, pos["江"]], end[0, pos["民"]] = -0.1, -0.2          # best valid span: 江泽民
    end[0, pos["江"] - 1] = 0.0                                  # end before start: ignored
    start[0, 1] = 0.0                                            # inside the question: ignored
    start[0, pos["北"]], end[0, pos["北"] + 1] = -1.0, -1.0      # second: 北京
    start[1, pos["北"]], end[1, pos["北"]] = -0.5, -0.5          # b: a one-character answer 北
    end[1, pos["北"] + 5] = 0.0                                   # 6 tokens: longer than max_answer_length
    predictions, nbest = squad_data.write_predictions_data(converted, start, end, n_best_size=20,
                                                           max_answer_length=5)
    assert predictions["a"] == "江泽民" and predictions["b"] == "北"
    texts = [n["text"] for n in nbest["a"]]
    assert texts[:2] == ["江泽民", "北京"] and len(texts) == len(set(texts)) <= 20
    assert sum(n["probability"] for n in nbest["a"]) == pytest.approx(1.0)
    first = nbest["a"][0]
    assert (first["start_index"], first["end_index"]) == (pos["江"], pos["民"])
    assert first["start_logit"] == pytest.approx(-0.1) and first["end_logit"] == pytest.approx(-0.2)
    assert list(first) == ["text", "probability", "start_logit", "end_logit", "start_index", "end_index"]
    scores = [n["start_logit"] + n["end_logit"] for n in nbest["a"]]
    assert scores == sorted(scores, reverse=True)
    # Nothing valid at all (every top index in the question): the original's "empty" entry, complete.
    start[2, :] = -20.0
    start[2, 1:4] = 0.0
    _, nbest = squad_data.write_predictions_data(converted, start, end, n_best_size=3, max_answer_length=30)
    assert nbest["c"] == [{"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0,
                           "start_index": 0, "end_index": 0}]


# ------------------------------------------------------------------------------------------------ the entry

def run_entry(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ENTRY), *args], env=env(), capture_output=True, text=True,
                            timeout=400)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def first_k_chars_baseline(dataset: dict) -> tuple[float, float]:
    """The best EM and F1 of answering every question with the first k characters of its context."""
    contexts = {q["id"]: p["context"] for a in dataset["data"] for p in a["paragraphs"] for q in p["qas"]}
    results = [cmrc2018_evaluate.evaluate(dataset, {i: c[:k] for i, c in contexts.items()}) for k in (2, 3, 4)]
    return max(r["EM"] for r in results), max(r["F1"] for r in results)


@pytest.fixture(scope="module")
def trained(prepared_data: Path, nezha_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """scripts/run_reading.sh as a user runs it, on a tiny random-init NEZHA: 400 real training questions,
    2 epochs (50 steps), prediction of the first 60 dev passages, then the official evaluator. VOCAB and
    BERT_CONFIG are run_clf.sh's names, which run_reading.sh accepts beside its own VOCAB_FILE and BERT_CONFIG_FILE."""
    tmp = tmp_path_factory.mktemp("reading")
    config = tmp / "bert_config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    dev = json.loads((prepared_data / "cmrc" / "dev.json").read_text(encoding="utf-8"))
    dev["data"] = dev["data"][:60]
    dev_file = tmp / "dev.json"
    dev_file.write_text(json.dumps(dev, ensure_ascii=False), encoding="utf-8")
    out = tmp / "out"
    settings = {"DATA_DIR": str(prepared_data / "cmrc"), "PREDICT_FILE": str(dev_file), "VOCAB": str(nezha_vocab),
                "BERT_CONFIG": str(config), "INIT_CHECKPOINT": "none", "OUTPUT_DIR": str(out),
                "MAX_TRAIN_EXAMPLES": "400", "EPOCHS": "2", "BATCH_SIZE": "16", "LEARNING_RATE": "1.5e-3",
                "MAX_SEQ_LENGTH": "128", "PREDICT_BATCH_SIZE": "32"}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_reading.sh")], env={**env(), **settings},
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return {"out": out, "dev": dev, "dev_file": dev_file, "config": config, "stdout": result.stdout}


def test_tiny_nezha_learns_cmrc_and_writes_the_original_files(trained):
    out, dev = trained["out"], trained["dev"]
    predictions = json.loads((out / "dev_predictions.json").read_text(encoding="utf-8"))
    gold = {q["id"]: p["context"] for a in dev["data"] for p in a["paragraphs"] for q in p["qas"]}
    assert set(predictions) == set(gold)
    assert all(text and text in gold[i] for i, text in predictions.items())       # spans of their contexts
    nbest = json.loads((out / "dev_nbest_predictions.json").read_text(encoding="ascii"))
    assert all(nbest[i][0]["text"] == predictions[i] for i in predictions)
    assert all(sum(n["probability"] for n in entries) == pytest.approx(1.0) for entries in nbest.values())
    assert (out / "dev_predictions.json").read_text(encoding="utf-8").startswith('{\n    "PD_DEV')
    assert "400 located by answer_start, 0 by text search" in trained["stdout"]
    # eval_results.txt holds the official evaluator's scores of dev_predictions.json, as does the script's
    # final result_metric.txt.
    results = read_key_values(out / "eval_results.txt")
    official = cmrc2018_evaluate.evaluate(dev, predictions)
    assert float(results["eval_em"]) == pytest.approx(official["EM"])
    assert float(results["eval_f1"]) == pytest.approx(official["F1"])
    assert results["global_step"] == "50" and int(results["eval_total"]) == len(gold)
    metric = json.loads((out / "result_metric.txt").read_text(encoding="utf-8"))
    assert metric["EM"] == "%.3f" % official["EM"] and metric["F1"] == "%.3f" % official["F1"]
    assert metric["TOTAL"] == len(gold) and metric["SKIP"] == 0
    # 50 steps reach about EM 7 / F1 17 on these 112 questions; the baseline is EM 4.5 / F1 10.3.
    baseline_em, baseline_f1 = first_k_chars_baseline(dev)
    assert official["EM"] > baseline_em and official["F1"] > baseline_f1 + 3, (official, baseline_em, baseline_f1)
    assert sorted(p.name for p in out.glob("model.ckpt-*.index")) == ["model.ckpt-50.index"]


def test_predict_and_eval_with_a_fine_tuned_checkpoint(trained, nezha_vocab, tmp_path):
    dev = trained["dev"]
    unanswered = {"data": [{"paragraphs": [{"context": p["context"], "qas": [
        {"id": q["id"], "question": q["question"]} for q in p["qas"]]} for p in a["paragraphs"]]}
        for a in dev["data"][:3]]}
    eval_file = tmp_path / "test.json"
    eval_file.write_text(json.dumps(unanswered, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    run_entry(f"--vocab_file={nezha_vocab}", f"--bert_config_file={trained['config']}",
              f"--init_checkpoint={trained['out'] / 'model.ckpt-50'}", "--max_seq_length=128",
              "--do_predict=true", f"--predict_file={trained['dev_file']}", "--do_eval=true",
              f"--eval_file={eval_file}", f"--output_dir={out}")
    # The same checkpoint gives the same dev predictions as right after training.
    assert (out / "dev_predictions.json").read_text(encoding="utf-8") == \
        (trained["out"] / "dev_predictions.json").read_text(encoding="utf-8")
    assert read_key_values(out / "eval_results.txt")["global_step"] == "50"
    # --do_eval on a file without answers: predictions only.
    test_predictions = json.loads((out / "test_predictions.json").read_text(encoding="utf-8"))
    assert set(test_predictions) == {q["id"] for a in unanswered["data"] for p in a["paragraphs"] for q in p["qas"]}
    assert (out / "test_nbest_predictions.json").exists() and not (out / "test_results.txt").exists()
    assert not list(out.glob("model.ckpt-*"))


def test_bad_json_record_stops_with_a_clear_message(tmp_path, nezha_vocab):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "北京", "qas": [
        {"id": "q1", "question": "哪里？", "answers": [{"text": "北京", "answer_start": 0}]},
        {"id": "q2", "answers": [{"text": "北京"}]}]}]}]}, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    result = run_entry(f"--vocab_file={nezha_vocab}", f"--bert_config_file={config}", "--init_checkpoint=none",
                       "--do_train=true", f"--train_file={bad}", f"--output_dir={out}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}: data[0].paragraphs[0].qas[1]: expected a str field 'question'" in result.stderr
    assert not list(out.glob("model.ckpt-*"))


def test_run_reading_sh_stops_without_a_checkpoint(tmp_path, prepared_data):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "run_reading.sh")], capture_output=True, text=True,
                            env={**env(), "DATA_DIR": str(prepared_data / "cmrc"), "MODEL_DIR": str(tmp_path),
                                 "VOCAB_FILE": str(ROOT / "NEZHA-TensorFlow" / "nezha" / "vocab.txt"),
                                 "BERT_CONFIG_FILE": str(ROOT / "NEZHA-TensorFlow" / "nezha" / "bert_config.json"),
                                 "OUTPUT_DIR": str(tmp_path / "out")}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path}/model.ckpt: checkpoint not found")
    assert "INIT_CHECKPOINT=none" in result.stderr
    assert not (tmp_path / "out").exists()


def squad_v2_file(path: Path) -> Path:
    """A SQuAD v2 dev file: one answerable question and two unanswerable ones."""
    dataset = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "江泽民在北京。", "qas": [
        {"id": "ok-1", "question": "谁在北京？", "is_impossible": False,
         "answers": [{"text": "江泽民", "answer_start": 0}]},
        {"id": "v2-no-answer", "question": "谁在上海？", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "江泽民", "answer_start": 0}]},
        {"id": "v2-other", "question": "何时？", "is_impossible": True, "answers": []}]}]}]}
    path.write_text(json.dumps(dataset, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_squad_v2_unanswerable_questions_are_rejected_with_the_count_and_the_first_id(tmp_path):
    path = squad_v2_file(tmp_path / "dev-v2.0.json")
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "v2-no-answer" in text)
    with pytest.raises(InputError) as err:
        read_squad_file(path)
    assert str(err.value) == (f"{path}:{line}: question 'v2-no-answer' is a SQuAD v2 unanswerable question "
                              "(is_impossible: true; 2 of 3 questions in this file); only answerable questions "
                              "(SQuAD v1, CMRC2018) are supported: remove them")
    # SQuAD v2 files whose questions are all answerable read as v1.
    dataset = json.loads(path.read_text(encoding="utf-8"))
    dataset["data"][0]["paragraphs"][0]["qas"] = dataset["data"][0]["paragraphs"][0]["qas"][:1]
    path.write_text(json.dumps(dataset, ensure_ascii=False), encoding="utf-8")
    assert [e.qas_id for e in read_squad_file(path)] == ["ok-1"]


def test_a_vocab_without_unk_cls_or_sep_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\n江\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        squad_data.ChineseFullTokenizer(str(tmp_path / "vocab.txt"))
    assert str(err.value) == f"{tmp_path / 'vocab.txt'}: the vocabulary lacks [UNK] (expected a BERT vocab.txt)"


def test_bad_vocab_config_and_squad_v2_files_stop_run_squad_with_exit_2(tmp_path, nezha_vocab, prepared_data):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    bad_config = tmp_path / "bad_config.json"
    bad_config.write_text(json.dumps({**TINY_CONFIG, "hidden_size": "64"}, indent=2))
    no_unk = tmp_path / "no_unk_vocab.txt"
    no_unk.write_text("".join(t for t in nezha_vocab.read_text(encoding="utf-8").splitlines(keepends=True)
                              if t.strip() != "[UNK]"), encoding="utf-8")
    dev = prepared_data / "cmrc" / "dev.json"
    v2 = squad_v2_file(tmp_path / "dev-v2.0.json")
    v2_line = next(n for n, text in enumerate(v2.read_text(encoding="utf-8").splitlines(), 1) if "v2-no-answer" in text)
    cases = [(no_unk, config, dev, f"error: {no_unk}: the vocabulary lacks [UNK] (expected a BERT vocab.txt)"),
             (tmp_path, config, dev,
              f"error: {tmp_path}: the vocabulary is a directory (expected vocab.txt, one token per line)"),
             (nezha_vocab, config, v2,
              f"error: {v2}:{v2_line}: question 'v2-no-answer' is a SQuAD v2 unanswerable question"),
             (nezha_vocab, bad_config, dev, f"error: {bad_config}:{list(TINY_CONFIG).index('hidden_size') + 2}: "
                                            'hidden_size: expected a positive integer, found "64"')]
    for vocab, bert_config, predict, expected in cases:
        out = tmp_path / "out"
        result = run_entry(f"--vocab_file={vocab}", f"--bert_config_file={bert_config}",
                           f"--init_checkpoint={tmp_path / 'model.ckpt-1'}", "--do_predict=true",
                           f"--predict_file={predict}", f"--output_dir={out}", check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert len(errors) == 1 and errors[0].startswith(expected), errors
        assert not out.exists() or not os.listdir(out)


def test_a_json_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_bytes('{"data": [{"paragraphs": [{\n"context": "'.encode() + "北京".encode("gbk") + b'", "qas": []}]}]}')
    with pytest.raises(InputError) as err:
        read_squad_file(path)
    assert err.value.path == str(path) and err.value.line == 2 and err.value.message.startswith("not UTF-8 text")
