"""A classifier fine-tuned by NEZHA-TensorFlow (logits = pooled . W^T + b) keeps its logits after conversion."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import convert_nezha_checkpoint
from distillation.task_data import config_label_names, label_permutation
from transformer.modeling import TinyBertForSequenceClassification

tf = pytest.importorskip("tensorflow")

VOCAB, HIDDEN, LABELS = 90, 32, 3


def _tf_config(relative: bool) -> dict:
    return {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": 48, "max_position_embeddings": 40,
        "num_attention_heads": 4, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": VOCAB,
        "use_relative_position": relative,
    }


def _write_classifier_checkpoint(tmp_path, relative: bool):
    """NEZHA-TensorFlow's BertModel + DenseHead (run_classifier.py's head names), random weights of real scale."""
    import checkpoint as tf_checkpoint
    import modeling as tf_modeling

    config_file = tmp_path / "bert_config.json"
    config_file.write_text(json.dumps(_tf_config(relative)), encoding="utf-8")
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(f"tok{i}\n" for i in range(VOCAB)), encoding="utf-8")
    encoder = tf_modeling.BertModel(tf_modeling.BertConfig.from_json_file(config_file))
    head = tf_modeling.DenseHead(LABELS, HIDDEN, "")
    rng = np.random.default_rng(3)
    variables = tf_checkpoint.named_variables(encoder, head)
    assert {"output_weights", "output_bias"} <= set(variables)
    for name, variable in variables.items():
        value = rng.normal(scale=0.2, size=variable.shape)
        variable.assign(value + 1.0 if name.endswith("gamma") else value)
    ids = rng.integers(1, VOCAB, size=(3, 21)).astype(np.int32)
    segments = (np.arange(21)[None, :] >= 12).astype(np.int32).repeat(3, axis=0)
    mask = np.ones_like(ids)
    mask[2, 15:] = 0
    outputs = encoder(tf.constant(ids), tf.constant(mask), tf.constant(segments), training=False)
    logits = head(outputs.pooled_output).numpy()
    prefix = tf_checkpoint.save_checkpoint(tmp_path / "tf", variables, step=11)
    return prefix, config_file, vocab_file, (ids, segments, mask), logits


@pytest.mark.parametrize("relative", [True, False], ids=["nezha", "bert"])
def test_converted_classifier_gives_the_tensorflow_logits(tmp_path, relative):
    prefix, config_file, vocab_file, (ids, segments, mask), expected = _write_classifier_checkpoint(tmp_path, relative)
    label_list = tmp_path / "label_list.txt"
    label_list.write_text("neutral\ncontradiction\nentailment\n", encoding="utf-8")
    out = tmp_path / "torch"
    convert_nezha_checkpoint.main(["--tf_checkpoint", prefix, "--bert_config_file", str(config_file),
                                   "--vocab_file", str(vocab_file), "--output_dir", str(out),
                                   "--label_list", str(label_list)])
    config = json.loads((out / "config.json").read_text())
    assert config["classifier_act"] == "none" and config["num_labels"] == LABELS
    assert config["id2label"] == {"0": "neutral", "1": "contradiction", "2": "entailment"}
    assert config["label2id"] == {"neutral": 0, "contradiction": 1, "entailment": 2}

    model = TinyBertForSequenceClassification.from_pretrained(out, num_labels=LABELS).eval()
    with torch.no_grad():
        logits, _, _ = model(torch.tensor(ids, dtype=torch.long), torch.tensor(segments, dtype=torch.long),
                             torch.tensor(mask, dtype=torch.long))
    np.testing.assert_allclose(logits.numpy(), expected, atol=1e-4, rtol=0)

    # With the original ReLU head the logits would differ: the key matters.
    model.config.classifier_act = "relu"
    relu_model = TinyBertForSequenceClassification(model.config, num_labels=LABELS)
    relu_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        relu_logits, _, _ = relu_model.eval()(torch.tensor(ids, dtype=torch.long),
                                              torch.tensor(segments, dtype=torch.long),
                                              torch.tensor(mask, dtype=torch.long))
    assert np.abs(relu_logits.numpy() - expected).max() > 1e-2

    # task_distill.py reads the teacher's logits in the task's order (GLUE MNLI order here).
    permutation = label_permutation(config_label_names(config), ["contradiction", "entailment", "neutral"], str(out))
    assert permutation == [1, 2, 0]
    np.testing.assert_allclose(logits.numpy()[:, permutation], expected[:, [1, 2, 0]], atol=1e-4, rtol=0)


def test_label_list_errors_are_one_line(tmp_path, capsys):
    prefix, config_file, vocab_file, _, _ = _write_classifier_checkpoint(tmp_path, True)
    label_list = tmp_path / "label_list.txt"
    label_list.write_text("0\n1\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        convert_nezha_checkpoint.main(["--tf_checkpoint", prefix, "--bert_config_file", str(config_file),
                                       "--vocab_file", str(vocab_file), "--output_dir", str(tmp_path / "out"),
                                       "--label_list", str(label_list)])
    assert exit_info.value.code == 2
    assert "2 labels listed but the checkpoint's classifier has 3 outputs" in capsys.readouterr().err
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()
