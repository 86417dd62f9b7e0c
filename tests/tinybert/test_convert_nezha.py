"""TF1 checkpoints under the original NEZHA/BERT names -> PyTorch, checked against Hugging Face's own TF loaders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import convert_nezha_checkpoint
from transformer import modeling

tf = pytest.importorskip("tensorflow")
transformers = pytest.importorskip("transformers")

VOCAB, HIDDEN, INTER, LAYERS, HEADS = 120, 32, 48, 2, 4


def tf_config(relative: bool) -> dict:
    return {
        "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": INTER, "max_position_embeddings": 40,
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "type_vocab_size": 2, "vocab_size": VOCAB,
        "use_relative_position": relative,
    }


def model_variables(relative: bool, seed: int) -> dict[str, np.ndarray]:
    """Every variable of BERT/NEZHA's TF graph with its TF layout (kernels [in, out])."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(scale=0.2, size=shape).astype(np.float32)

    names = {
        "bert/embeddings/word_embeddings": normal(VOCAB, HIDDEN),
        "bert/embeddings/token_type_embeddings": normal(2, HIDDEN),
        "bert/embeddings/LayerNorm/gamma": 1 + normal(HIDDEN),
        "bert/embeddings/LayerNorm/beta": normal(HIDDEN),
        "bert/pooler/dense/kernel": normal(HIDDEN, HIDDEN),
        "bert/pooler/dense/bias": normal(HIDDEN),
        "cls/predictions/transform/dense/kernel": normal(HIDDEN, HIDDEN),
        "cls/predictions/transform/dense/bias": normal(HIDDEN),
        "cls/predictions/transform/LayerNorm/gamma": 1 + normal(HIDDEN),
        "cls/predictions/transform/LayerNorm/beta": normal(HIDDEN),
        "cls/predictions/output_bias": normal(VOCAB),
        "cls/seq_relationship/output_weights": normal(2, HIDDEN),
        "cls/seq_relationship/output_bias": normal(2),
    }
    if not relative:
        names["bert/embeddings/position_embeddings"] = normal(40, HIDDEN)
    for k in range(LAYERS):
        layer = f"bert/encoder/layer_{k}"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            names[f"{layer}/{part}/kernel"] = normal(HIDDEN, HIDDEN)
            names[f"{layer}/{part}/bias"] = normal(HIDDEN)
        names[f"{layer}/intermediate/dense/kernel"] = normal(HIDDEN, INTER)
        names[f"{layer}/intermediate/dense/bias"] = normal(INTER)
        names[f"{layer}/output/dense/kernel"] = normal(INTER, HIDDEN)
        names[f"{layer}/output/dense/bias"] = normal(HIDDEN)
        for part in ("attention/output/LayerNorm", "output/LayerNorm"):
            names[f"{layer}/{part}/gamma"] = 1 + normal(HIDDEN)
            names[f"{layer}/{part}/beta"] = normal(HIDDEN)
    return names


def write_tf1_checkpoint(prefix: str, variables: dict[str, np.ndarray], slots: tuple[str, ...], extras: bool) -> None:
    """Save as TF1 graph code did: tf.compat.v1.get_variable under the original names, a v1 Saver."""
    graph = tf.Graph()
    with graph.as_default():
        for name, value in variables.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
            for slot in slots:
                tf.compat.v1.get_variable(f"{name}/{slot}", initializer=tf.constant(np.full_like(value, 7.0)))
        tf.compat.v1.get_variable("global_step", initializer=tf.constant(1000, dtype=tf.int64), trainable=False)
        if extras:
            tf.compat.v1.get_variable("loss_scale", initializer=tf.constant(2.0**15), trainable=False)
            tf.compat.v1.get_variable("good_steps", initializer=tf.constant(3, dtype=tf.int64), trainable=False)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix)


def inputs():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, VOCAB, (2, 11), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, 7:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    return input_ids, token_type_ids, mask


class HFHolder(torch.nn.Module):
    """What Hugging Face's TF loaders walk: `.bert` the encoder, `.cls` the pretraining heads."""

    def __init__(self, encoder, heads):
        super().__init__()
        self.bert = encoder
        self.cls = heads


@pytest.mark.parametrize("relative", [True, False], ids=["nezha", "google_bert"])
def test_converted_checkpoint_equals_hugging_face_tf_loader(tmp_path, relative, capsys):
    variables = model_variables(relative, seed=1 if relative else 2)
    # ours: with every slot and bookkeeping variable a pretraining/fine-tuning run leaves behind
    write_tf1_checkpoint(str(tmp_path / "ours" / "model.ckpt-1000"), variables, ("adam_m", "adam_v", "lamb_m", "lamb_v"), True)
    # theirs: Hugging Face's loader skips adam slots and global_step only (not lamb slots nor loss scale)
    write_tf1_checkpoint(str(tmp_path / "theirs" / "model.ckpt"), variables, ("adam_m", "adam_v"), False)
    (tmp_path / "bert_config.json").write_text(json.dumps(tf_config(relative)))
    (tmp_path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(VOCAB)))

    convert_nezha_checkpoint.main([
        "--tf_checkpoint", str(tmp_path / "ours"),  # a directory: its newest model.ckpt-N
        "--bert_config_file", str(tmp_path / "bert_config.json"),
        "--vocab_file", str(tmp_path / "vocab.txt"),
        "--output_dir", str(tmp_path / "out"),
    ])
    assert "skipped" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new" and config["use_relative_position"] is relative
    assert config["model_type"] == ("nezha" if relative else "bert")
    if relative:
        assert config["max_relative_position"] == 64
    state = torch.load(tmp_path / "out" / "pytorch_model.bin", weights_only=True)
    assert not any(key.endswith(("adam_m", "adam_v", "lamb_m", "lamb_v")) or "global_step" in key or "loss_scale" in key or "good_steps" in key for key in state)

    kwargs = dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=INTER,
        max_position_embeddings=40, hidden_act="gelu_new", attn_implementation="eager",
    )
    if relative:
        hf_config = transformers.NezhaConfig(**kwargs, max_relative_position=64)
        hf = transformers.NezhaForPreTraining(hf_config)
        from transformers.models.deprecated.nezha.modeling_nezha import load_tf_weights_in_nezha

        load_tf_weights_in_nezha(HFHolder(hf.nezha, hf.cls), hf_config, str(tmp_path / "theirs" / "model.ckpt"))
        encoder = hf.nezha
    else:
        hf_config = transformers.BertConfig(**kwargs)
        hf = transformers.BertForPreTraining(hf_config)
        transformers.load_tf_weights_in_bert(hf, hf_config, str(tmp_path / "theirs" / "model.ckpt"))
        encoder = hf.bert
    hf.eval()

    ours, info = modeling.TinyBertForPreTraining.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert info == {"missing_keys": ["fit_dense.weight", "fit_dense.bias"], "unexpected_keys": []}
    ours.eval()
    input_ids, token_type_ids, mask = inputs()
    with torch.no_grad():
        encoded = ours.bert(input_ids, token_type_ids, mask)
        layers, atts, pooled = encoded.hidden_states, encoded.attentions, encoded.pooled_output
        out = encoder(input_ids, attention_mask=mask, token_type_ids=token_type_ids, output_hidden_states=True, output_attentions=True)
        for mine, theirs in zip(layers, out.hidden_states, strict=True):
            assert (mine - theirs).abs().max() < 1e-5
        for scores, probs in zip(atts, out.attentions, strict=True):
            assert (torch.softmax(scores, -1) - probs).abs().max() < 1e-5
        mlm, nsp = ours.cls(layers[-1], pooled)
        heads = hf(input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        assert (mlm - heads.prediction_logits).abs().max() < 1e-4
        assert (nsp - heads.seq_relationship_logits).abs().max() < 1e-5

    # from_tf reads the checkpoint directly, without a conversion step
    (tmp_path / "ours" / "bert_config.json").write_text((tmp_path / "out" / "config.json").read_text())
    direct = modeling.BertModel.from_pretrained(tmp_path / "ours", from_tf=True)
    assert torch.equal(direct.encoder.layer[1].output.dense.weight, ours.bert.encoder.layer[1].output.dense.weight)


def test_conversion_errors_are_one_line(tmp_path, capsys):
    variables = model_variables(True, seed=3)
    write_tf1_checkpoint(str(tmp_path / "model.ckpt"), variables, (), False)
    (tmp_path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(VOCAB)))

    def run(config: dict, *extra: str) -> str:
        (tmp_path / "bert_config.json").write_text(json.dumps(config))
        with pytest.raises(SystemExit) as exit_info:
            convert_nezha_checkpoint.main([
                "--tf_checkpoint", str(tmp_path / "model.ckpt"), "--bert_config_file", str(tmp_path / "bert_config.json"),
                "--vocab_file", str(tmp_path / "vocab.txt"), "--output_dir", str(tmp_path / "out"), *extra,
            ])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
        return err[0]

    message = run({**tf_config(True), "intermediate_size": 40})
    assert "intermediate.dense.weight" in message and "(48, 32)" in message and "(40, 32)" in message
    message = run(tf_config(True), "--model_type", "bert")
    assert "position_embeddings" in message and "--model_type" in message
    message = run({**tf_config(True), "vocab_size": 100})
    assert "vocabulary has 120 tokens" in message
    (tmp_path / "bert_config.json").write_text(json.dumps(tf_config(True)))
    with pytest.raises(SystemExit):
        convert_nezha_checkpoint.main([
            "--tf_checkpoint", str(tmp_path / "absent.ckpt"), "--bert_config_file", str(tmp_path / "bert_config.json"),
            "--vocab_file", str(tmp_path / "vocab.txt"), "--output_dir", str(tmp_path / "out"),
        ])
    assert "no TensorFlow checkpoint here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("relative", [True, False], ids=["nezha", "bert"])
def test_checkpoint_written_by_nezha_tensorflow_gives_the_same_hidden_states_in_pytorch(tmp_path, relative):
    """NEZHA-TensorFlow's own model and checkpoint writer -> converter -> TinyBERT's BertModel, layer by layer."""
    import checkpoint as tf_checkpoint
    import modeling as tf_modeling

    config = tf_config(relative)
    config_file = tmp_path / "bert_config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(f"tok{i}\n" for i in range(VOCAB)), encoding="utf-8")

    tf_model = tf_modeling.BertModel(tf_modeling.BertConfig.from_json_file(config_file))
    rng = np.random.default_rng(5)
    # Weights of real scale, so that the two GELU forms (erf vs tanh) or a wrong transpose would show.
    for name, variable in tf_checkpoint.named_variables(tf_model).items():
        value = rng.normal(scale=0.2, size=variable.shape)
        variable.assign(value + 1.0 if name.endswith("gamma") else value)
    ids = rng.integers(1, VOCAB, size=(2, 37)).astype(np.int32)
    segments = (np.arange(37)[None, :] >= 20).astype(np.int32).repeat(2, axis=0)
    mask = np.ones_like(ids)
    mask[1, 25:] = 0
    expected = tf_model(tf.constant(ids), tf.constant(mask), tf.constant(segments), training=False)
    prefix = tf_checkpoint.save_checkpoint(tmp_path / "tf", tf_checkpoint.named_variables(tf_model), step=7)

    out = tmp_path / "torch"
    convert_nezha_checkpoint.main(["--tf_checkpoint", prefix, "--bert_config_file", str(config_file),
                                   "--vocab_file", str(vocab_file), "--output_dir", str(out)])
    torch_model = modeling.BertModel.from_pretrained(out).eval()
    with torch.no_grad():
        encoded = torch_model(torch.tensor(ids, dtype=torch.long), torch.tensor(segments, dtype=torch.long),
                              torch.tensor(mask, dtype=torch.long))
        layers, pooled = encoded.hidden_states, encoded.pooled_output
    tf_layers = [expected.embedding_output] + list(expected.all_encoder_layers)
    assert len(layers) == len(tf_layers) == LAYERS + 1
    for ours, theirs in zip(layers, tf_layers):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(pooled.numpy(), expected.pooled_output.numpy(), atol=1e-4, rtol=0)


def test_a_config_value_of_the_wrong_type_stops_the_conversion_with_its_line(tmp_path, capsys):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps({**tf_config(True), "num_attention_heads": None}, indent=2))
    line = 1 + list(tf_config(True)).index("num_attention_heads") + 1
    (tmp_path / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(VOCAB)))
    with pytest.raises(SystemExit) as exit_info:
        convert_nezha_checkpoint.main(["--tf_checkpoint", str(tmp_path / "model.ckpt"), "--bert_config_file",
                                       str(config), "--vocab_file", str(tmp_path / "vocab.txt"),
                                       "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {config}:{line}: num_attention_heads: expected a positive integer, found null"]
    assert not (tmp_path / "out").exists()
