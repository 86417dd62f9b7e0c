"""pretraining_data.py: records written by utils/create_pretraining_data.py come back unchanged through the
tf.data pipelines (compared with a protobuf parse of the same bytes), ranks read disjoint files, and records
of the wrong shape or vocabulary stop with a message naming the file and record."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import distribution
import pretraining_data
from utils import create_pretraining_data as cpd
from utils.errors import InputError

SEQ = 32
MAX_PRED = 5


@pytest.fixture(scope="module")
def records(nezha_vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("records")
    corpus = directory / "corpus.txt"
    documents = [["今天天气很好。", "我们去公园散步。", "公园里有很多人。"],
                 ["北京是中国的首都。", "北京有很多名胜古迹。", "故宫是其中之一。", "长城也很有名。"],
                 ["他喜欢读书。", "图书馆每天都开放。"]]
    corpus.write_text("\n\n".join("\n".join(d) for d in documents) + "\n", encoding="utf-8")
    outputs = [directory / f"part-{i}.tfrecord" for i in range(3)]
    cpd.create_pretraining_data(str(corpus), ",".join(map(str, outputs)), str(nezha_vocab), max_seq_length=SEQ,
                                max_predictions_per_seq=MAX_PRED, dupe_factor=4)
    return outputs


def parsed(path: Path) -> list[dict[str, np.ndarray]]:
    """Each record of `path` by protobuf alone."""
    out = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        feature = tf.train.Example.FromString(raw).features.feature
        out.append({name: np.array(feature[name].float_list.value if name == "masked_lm_weights"
                                   else feature[name].int64_list.value) for name in pretraining_data.FEATURE_NAMES})
    return out


def test_eval_dataset_round_trip(records):
    expected = [r for path in records for r in parsed(path)]
    batch_size = 4
    dataset = pretraining_data.eval_dataset([str(p) for p in records], batch_size, SEQ, MAX_PRED)
    batches = list(dataset.take(len(expected) // batch_size).as_numpy_iterator())
    for name in pretraining_data.FEATURE_NAMES:
        got = np.concatenate([b[name] for b in batches])
        want = np.stack([r[name] for r in expected[:len(got)]])
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.dtype == (np.float32 if name == "masked_lm_weights" else np.int32)
    assert batches[0]["next_sentence_labels"].shape == (batch_size, 1)
    # Evaluation repeats the files: batch number len(expected) starts at record len(expected) * batch_size,
    # which wraps round to record 0.
    wrapped = list(dataset.skip(len(expected)).take(1).as_numpy_iterator())[0]
    np.testing.assert_array_equal(wrapped["input_ids"][0], expected[0]["input_ids"])


def test_train_dataset_shapes_shuffle_and_rank_shards(records):
    files = [str(p) for p in records]
    all_ids = {tuple(r["input_ids"]) for path in records for r in parsed(path)}
    dataset = pretraining_data.train_dataset(files, 8, SEQ, MAX_PRED)
    assert dataset.element_spec["input_ids"].shape.as_list() == [8, SEQ]  # drop_remainder: static batch
    seen = set()
    for batch in dataset.take(30).as_numpy_iterator():
        seen.update(tuple(row) for row in batch["input_ids"])
    assert seen == all_ids  # endless: every record comes round
    shards = []
    for rank in range(2):
        engine = distribution.Engine()
        engine.rank, engine.size = rank, 2
        mine = engine.shard_files(files)
        ids = {tuple(r["input_ids"]) for path in mine for r in parsed(Path(path))}
        batch = next(iter(pretraining_data.train_dataset(mine, 2, SEQ, MAX_PRED)))
        assert {tuple(row) for row in batch["input_ids"].numpy()} <= ids
        shards.append(ids)
    assert not shards[0] & shards[1] and shards[0] | shards[1] == all_ids


def test_seeded_train_dataset_is_reproducible(records):
    files = [str(p) for p in records]
    first = [b["input_ids"] for b in pretraining_data.train_dataset(files, 4, SEQ, MAX_PRED, seed=5)
             .take(5).as_numpy_iterator()]
    second = [b["input_ids"] for b in pretraining_data.train_dataset(files, 4, SEQ, MAX_PRED, seed=5)
              .take(5).as_numpy_iterator()]
    np.testing.assert_array_equal(first, second)


def test_check_records(records, tmp_path):
    files = [str(p) for p in records]
    pretraining_data.check_records(files, SEQ, MAX_PRED, vocab_size=21128)
    with pytest.raises(InputError, match=r"part-0.tfrecord: record 1: feature input_ids has 32 values, expected "
                                         r"64 \(written with another --max_seq_length\?\)"):
        pretraining_data.check_records(files, 64, MAX_PRED)
    with pytest.raises(InputError, match=r"masked_lm_positions has 5 values, expected 20 "
                                         r"\(written with another --max_predictions_per_seq\?\)"):
        pretraining_data.check_records(files, SEQ, 20)
    with pytest.raises(InputError, match=r"record 1: token id \d+ is outside the vocabulary of the BERT config "
                                         r"\(vocab_size 1000\)"):
        pretraining_data.check_records(files, SEQ, MAX_PRED, vocab_size=1000)
    text = tmp_path / "notes.tfrecord"
    text.write_text("this is not a tfrecord file at all\n", encoding="utf-8")
    with pytest.raises(InputError, match="notes.tfrecord: not a readable TFRecord file"):
        pretraining_data.check_records([str(text)], SEQ, MAX_PRED)
    empty = tmp_path / "empty.tfrecord"
    tf.io.TFRecordWriter(str(empty)).close()
    with pytest.raises(InputError, match="empty.tfrecord: no record in this file"):
        pretraining_data.check_records([str(empty)], SEQ, MAX_PRED)
    other = tmp_path / "other.tfrecord"
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * SEQ))})).SerializeToString())
    with pytest.raises(InputError, match="other.tfrecord: record 1 has no feature input_mask"):
        pretraining_data.check_records([str(other)], SEQ, MAX_PRED)


def test_expand_input_files(records, tmp_path):
    directory = records[0].parent
    assert pretraining_data.expand_input_files(f"{directory}/part-*.tfrecord") == [str(p) for p in records]
    assert pretraining_data.expand_input_files(f"{records[2]},{records[0]}") == [str(records[2]), str(records[0])]
    with pytest.raises(InputError, match="no file matches"):
        pretraining_data.expand_input_files(str(tmp_path / "none-*.tfrecord"))
