"""NEZHA-TensorFlow modeling.py against the reference formulas and Hugging Face transformers 4.57.6.

Hugging Face reads the weights with its own TF-checkpoint loaders from a checkpoint that our checkpoint.py
wrote, so these tests check the model and the checkpoint names together.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import checkpoint
import modeling
from utils.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
            max_position_embeddings=96, type_vocab_size=2, initializer_range=0.02)


def tiny_config(**overrides) -> modeling.BertConfig:
    return modeling.BertConfig.from_dict({**TINY, "use_relative_position": True, **overrides})


def randomize(model: tf.Module, seed: int) -> None:
    """Non-trivial values everywhere (LayerNorm and biases included), so that no name can go unchecked."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        variable.assign(rng.normal(0.0, 0.2, variable.shape).astype(np.float32)
                        + (1.0 if variable.name.endswith("gamma:0") else 0.0))


def batch(seed: int, batch_size: int = 3, length: int = 80, vocab: int = 97):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch_size, length)).astype(np.int32)
    types = np.zeros_like(ids)
    types[:, length // 2:] = 1
    mask = np.ones_like(ids)
    if batch_size >= 3:
        mask[1, length - 13:] = 0
        mask[2, 5:] = 0
    return ids, mask, types


def hf_config(config: modeling.BertConfig, relative: bool):
    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                  num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
                  intermediate_size=config.intermediate_size, hidden_act="gelu_new", hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, max_position_embeddings=config.max_position_embeddings,
                  type_vocab_size=config.type_vocab_size, layer_norm_eps=1e-12)
    if relative:
        return transformers.NezhaConfig(max_relative_position=config.max_relative_position, **common)
    return transformers.BertConfig(attn_implementation="eager", **common)


def hf_from_our_checkpoint(prefix: str, config: modeling.BertConfig, relative: bool):
    """Hugging Face's pre-training model, loaded by its own TF1 loader from our checkpoint."""
    from transformers.models.deprecated.nezha.modeling_nezha import load_tf_weights_in_nezha

    torch.manual_seed(0)
    cfg = hf_config(config, relative)
    if relative:
        model = transformers.NezhaForPreTraining(cfg)
        holder = torch.nn.Module()
        holder.bert, holder.cls = model.nezha, model.cls
        load_tf_weights_in_nezha(holder, cfg, prefix)
        encoder = model.nezha
    else:
        model = transformers.BertForPreTraining(cfg)
        transformers.load_tf_weights_in_bert(model, cfg, prefix)
        encoder = model.bert
    model.eval()
    return model, encoder


def run_hf(model, encoder, ids, mask, types):
    with torch.no_grad():
        args = dict(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                    token_type_ids=torch.from_numpy(types).long())
        hidden = encoder(**args, output_hidden_states=True)
        heads = model(**args)
    return ([h.numpy() for h in hidden.hidden_states], hidden.pooler_output.numpy(),
            heads.prediction_logits.numpy(), heads.seq_relationship_logits.numpy())


def assert_close(ours, theirs, mask=None, atol=1e-4):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    if mask is not None:
        keep = mask.astype(bool)
        ours, theirs = ours[keep], theirs[keep]
    assert np.abs(ours - theirs).max() < atol, np.abs(ours - theirs).max()


def test_relative_position_table_matches_reference_vectors():
    table = modeling.relative_position_table(64, 64)
    assert table.shape == (129, 64) and table.dtype == np.float32
    np.testing.assert_allclose(table[0, :4], [0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(table[64, :6], [0.92002606, 0.39185724, -0.7639029, -0.6453312, -0.99042827,
                                               -0.13802862], rtol=1e-6)
    np.testing.assert_allclose(table[128, :4], [0.7210377, -0.6928958, 0.98594075, -0.16709535], rtol=1e-6)
    assert table.sum() == pytest.approx(2773.7336, abs=2e-3)


def test_relative_index_is_clipped_shifted_key_minus_query():
    index = modeling.relative_position_index(6, 2).numpy()
    expected = [[min(max(j - i, -2), 2) + 2 for j in range(6)] for i in range(6)]
    np.testing.assert_array_equal(index, expected)


def test_relative_model_equals_hf_nezha_loaded_from_our_checkpoint(tmp_path):
    config = tiny_config()
    ours = modeling.BertForPreTraining(config)
    randomize(ours, 1)
    assert not any("position_embeddings" in name for name in checkpoint.named_variables(ours))
    prefix = checkpoint.save_checkpoint(tmp_path, checkpoint.named_variables(ours), step=3)
    model, encoder = hf_from_our_checkpoint(prefix, config, relative=True)
    ids, mask, types = batch(2)   # 80 tokens: relative distances beyond K = 64 are clipped
    out = ours(ids, mask, types)
    hidden, pooled, mlm, nsp = run_hf(model, encoder, ids, mask, types)
    assert len(out.bert.all_encoder_layers) == config.num_hidden_layers == len(hidden) - 1
    assert_close(out.bert.embedding_output, hidden[0])
    for layer, theirs in zip(out.bert.all_encoder_layers, hidden[1:]):
        assert_close(layer, theirs, mask)
    assert_close(out.bert.pooled_output, pooled)
    assert_close(out.masked_lm_logits, mlm, mask)
    assert_close(out.next_sentence_logits, nsp)
    positions = np.array([[0, 70, 79], [3, 1, 2], [4, 0, 0]], np.int32)
    at_positions = ours(ids, mask, types, masked_lm_positions=positions).masked_lm_logits
    assert_close(at_positions, np.stack([mlm[b, positions[b]] for b in range(3)]))


def test_one_hot_embeddings_equal_the_gather():
    config = tiny_config()
    gathered, one_hot = modeling.BertModel(config), modeling.BertModel(config, use_one_hot_embeddings=True)
    for a, b in zip(gathered.variables, one_hot.variables):
        b.assign(a)
    ids, mask, types = batch(13, length=9)
    np.testing.assert_allclose(one_hot(ids, mask, types).sequence_output.numpy(),
                               gathered(ids, mask, types).sequence_output.numpy(), atol=1e-6)


def test_configurable_max_relative_position_equals_hf(tmp_path):
    config = tiny_config(max_relative_position=3)
    ours = modeling.BertModel(config)
    randomize(ours, 3)
    prefix = checkpoint.save_checkpoint(tmp_path, checkpoint.named_variables(ours))
    model, encoder = hf_from_our_checkpoint(prefix, config, relative=True)
    ids, mask, types = batch(5, length=12)
    hidden, _, _, _ = run_hf(model, encoder, ids, mask, types)
    assert_close(ours(ids, mask, types).sequence_output, hidden[-1], mask)


def test_absolute_model_equals_hf_bert_loaded_from_our_checkpoint(tmp_path):
    config = tiny_config(use_relative_position=False)
    ours = modeling.BertForPreTraining(config)
    randomize(ours, 6)
    names = checkpoint.named_variables(ours)
    assert names["bert/embeddings/position_embeddings"].shape == (96, 32)
    prefix = checkpoint.save_checkpoint(tmp_path, names)
    model, encoder = hf_from_our_checkpoint(prefix, config, relative=False)
    ids, mask, types = batch(7, length=40)
    out = ours(ids, mask, types)
    hidden, pooled, mlm, nsp = run_hf(model, encoder, ids, mask, types)
    assert_close(out.bert.embedding_output, hidden[0])
    for layer, theirs in zip(out.bert.all_encoder_layers, hidden[1:]):
        assert_close(layer, theirs, mask)
    assert_close(out.bert.pooled_output, pooled)
    assert_close(out.masked_lm_logits, mlm, mask)
    assert_close(out.next_sentence_logits, nsp)


def test_absolute_positions_longer_than_the_table_stop_with_a_clear_error():
    model = modeling.BertModel(tiny_config(use_relative_position=False, max_position_embeddings=16))
    with pytest.raises(InputError, match="longer than max_position_embeddings 16"):
        model(np.zeros([1, 17], np.int32))
    dynamic = tf.function(lambda ids: model(ids).sequence_output,
                          input_signature=[tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_position_embeddings"):
        dynamic(np.zeros([1, 17], np.int32))
    assert dynamic(np.zeros([1, 16], np.int32)).shape == (1, 16, 32)


def test_relative_model_has_no_length_limit_from_position_embeddings():
    model = modeling.BertModel(tiny_config(max_position_embeddings=16))
    assert model(np.ones([1, 20], np.int32)).sequence_output.shape == (1, 20, 32)


def test_padding_does_not_change_unpadded_positions():
    model = modeling.BertModel(tiny_config())
    randomize(model, 8)
    ids, _, types = batch(9, batch_size=1, length=10)
    short = model(ids, np.ones_like(ids), types)
    padded_ids = np.concatenate([ids, np.full([1, 6], 7, np.int32)], axis=1)
    padded_types = np.concatenate([types, np.ones([1, 6], np.int32)], axis=1)
    padded_mask = np.concatenate([np.ones_like(ids), np.zeros([1, 6], np.int32)], axis=1)
    padded = model(padded_ids, padded_mask, padded_types)
    for a, b in zip(short.all_encoder_layers, padded.all_encoder_layers):
        np.testing.assert_allclose(a.numpy(), b.numpy()[:, :10], atol=2e-5)
    np.testing.assert_allclose(short.pooled_output.numpy(), padded.pooled_output.numpy(), atol=2e-5)
    # and the mask matters: unmasked padding changes the outputs
    unmasked = model(padded_ids, np.ones_like(padded_ids), padded_types)
    assert np.abs(unmasked.sequence_output.numpy()[:, :10] - short.sequence_output.numpy()).max() > 1e-3


def test_dropout_only_when_training():
    model = modeling.BertModel(tiny_config())
    ids, mask, types = batch(10, length=8)
    first = model(ids, mask, types).sequence_output.numpy()
    np.testing.assert_array_equal(first, model(ids, mask, types, training=False).sequence_output.numpy())
    trained = model(ids, mask, types, training=True).sequence_output.numpy()
    assert np.abs(trained - first).max() > 1e-3
    no_dropout = modeling.BertModel(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    np.testing.assert_allclose(no_dropout(ids, training=True).sequence_output.numpy(),
                               no_dropout(ids).sequence_output.numpy(), atol=1e-6)


def test_xla_forward_and_gradients_equal_eager():
    model = modeling.BertForPreTraining(tiny_config())
    randomize(model, 11)
    ids, mask, types = batch(12, length=16)
    positions = np.array([[1, 4], [2, 3], [0, 5]], np.int32)

    def loss(ids, mask, types):
        with tf.GradientTape() as tape:
            out = model(ids, mask, types, positions)
            value = tf.reduce_sum(out.masked_lm_logits ** 2) + tf.reduce_sum(out.next_sentence_logits)
        return value, tape.gradient(value, model.trainable_variables)

    eager_value, eager_grads = loss(ids, mask, types)
    xla_value, xla_grads = tf.function(loss, jit_compile=True)(ids, mask, types)
    assert float(xla_value) == pytest.approx(float(eager_value), rel=1e-5)
    for a, b in zip(eager_grads, xla_grads):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), tf.convert_to_tensor(b).numpy(),
                                   atol=1e-4, rtol=1e-4)


def test_heads_have_the_original_names_and_tied_decoder():
    config = tiny_config()
    model = modeling.BertForPreTraining(config)
    names = checkpoint.named_variables(model)
    assert names["cls/predictions/output_bias"].shape == (97,)
    assert names["cls/seq_relationship/output_weights"].shape == (2, 32)
    assert model.masked_lm.embedding_table is names["bert/embeddings/word_embeddings"]
    assert "cls/predictions/decoder" not in " ".join(names)
    classifier = modeling.DenseHead(3, 32)
    squad = modeling.DenseHead(2, 32, scope="cls/squad")
    assert set(checkpoint.named_variables(classifier)) == {"output_weights", "output_bias"}
    assert set(checkpoint.named_variables(squad)) == {"cls/squad/output_weights", "cls/squad/output_bias"}
    x = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
    np.testing.assert_allclose(classifier(x).numpy(), x @ classifier.output_weights.numpy().T, atol=1e-6)
    with tf.name_scope("some_scope"):
        inside = modeling.DenseHead(2, 8, scope="cls/squad")
    assert inside.output_bias.name == "cls/squad/output_bias:0"


def test_initialisation_is_truncated_normal_and_layernorm_ones():
    model = modeling.BertModel(tiny_config(initializer_range=0.5))
    kernel = model.layers[0].intermediate.kernel.numpy()
    assert np.abs(kernel).max() <= 1.0 + 1e-6 and kernel.std() == pytest.approx(0.5 * 0.88, rel=0.15)
    np.testing.assert_array_equal(model.layers[0].output_norm.gamma.numpy(), 1.0)
    np.testing.assert_array_equal(model.layers[0].output.bias.numpy(), 0.0)


def test_gelu_is_the_tanh_form():
    x = np.linspace(-4, 4, 17).astype(np.float32)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(modeling.gelu(tf.constant(x)).numpy(), expected, atol=1e-6)
    with pytest.raises(InputError, match="Unsupported activation"):
        modeling.get_activation("swishy")


def test_config_keeps_unknown_keys_and_writes_the_original_json(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({"vocab_size": 5, "directionality": "bidi", "use_relative_position": True}))
    config = modeling.BertConfig.from_json_file(path)
    assert config.directionality == "bidi" and config.hidden_size == 768 and config.type_vocab_size == 16
    assert config.max_relative_position == 64
    text = config.to_json_string()
    assert text.endswith("}\n") and json.loads(text)["directionality"] == "bidi"
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    (tmp_path / "bad.json").write_text('{"vocab_size": 5,\n "x": }')
    with pytest.raises(InputError, match=r"bad.json:2"):
        modeling.BertConfig.from_json_file(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        modeling.BertConfig.from_json_file(tmp_path / "missing.json")
    with pytest.raises(InputError, match="not a multiple"):
        modeling.BertModel(tiny_config(num_attention_heads=5))


def test_shipped_base_config_is_the_original(root, shared_data):
    nezha = root / "NEZHA-TensorFlow" / "nezha"
    assert json.loads((nezha / "bert_config.json").read_text()) == \
        json.loads((shared_data / "nezha" / "bert_config.json").read_text())


def test_shipped_large_and_tiny_configs(root):
    nezha = root / "NEZHA-TensorFlow" / "nezha"
    base = modeling.BertConfig.from_json_file(nezha / "bert_config.json")
    assert (base.num_hidden_layers, base.hidden_size, base.vocab_size, base.use_relative_position) == \
        (12, 768, 21128, True)
    large = modeling.BertConfig.from_json_file(nezha / "bert_config_large.json")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads, large.intermediate_size) == \
        (24, 1024, 16, 4096) and large.use_relative_position
    tiny = modeling.BertConfig.from_json_file(nezha / "bert_config_tiny.json")
    assert (tiny.num_hidden_layers, tiny.hidden_size, tiny.num_attention_heads, tiny.intermediate_size,
            tiny.vocab_size, tiny.type_vocab_size) == (4, 256, 4, 1024, 21128, 2) and tiny.use_relative_position


@pytest.mark.parametrize("value, found", [("32", '"32"'), (None, "null"), (1.5, "1.5"), (-1, "-1")])
def test_config_values_of_the_wrong_type_name_the_file_line_and_key(tmp_path, value, found):
    path = tmp_path / "bert_config.json"
    path.write_text('{\n  "vocab_size": 5,\n  "hidden_size": %s\n}' % json.dumps(value))
    with pytest.raises(InputError) as err:
        modeling.BertConfig.from_json_file(path)
    assert str(err.value) == f"{path}:3: hidden_size: expected a positive integer, found {found}"
