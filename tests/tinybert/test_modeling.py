"""The TinyBERT encoders and heads against Hugging Face transformers 4.57.6 and hand-written formulas."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from transformer import modeling
from transformer.checkpoints import load_state_dict_into
from utils.errors import InputError

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def _layers_atts_pooled(encoded: modeling.EncoderOutput) -> tuple:
    return encoded.hidden_states, encoded.attentions, encoded.pooled_output


def tiny_config(**overrides) -> modeling.BertConfig:
    values = dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, max_position_embeddings=32
    )
    values.update(overrides)
    relative = values.pop("use_relative_position", False)
    max_relative = values.pop("max_relative_position", None)
    config = modeling.BertConfig(97, **values)
    if relative:
        config.use_relative_position = True
    if max_relative is not None:
        config.max_relative_position = max_relative
    return config


def hf_kwargs(config: modeling.BertConfig) -> dict:
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        attn_implementation="eager",
    )


def batch(length: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 97, (3, length), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2 :] = 1
    mask = torch.ones_like(input_ids)
    mask[1, length - 4 :] = 0
    mask[2, 3:] = 0
    input_ids[mask == 0] = 0
    return input_ids, token_type_ids, mask


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, tol: float = TOL) -> None:
    diff = (ours - theirs).abs().max().item()
    assert diff < tol, f"max abs diff {diff}"


def test_config_keeps_every_key_and_writes_the_original_json(tmp_path):
    released = {
        "attention_probs_dropout_prob": 0.1, "cell": {}, "emb_size": 312, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 312, "initializer_range": 0.02, "intermediate_size": 1200,
        "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 4, "pre_trained": "",
        "structure": [], "training": "", "type_vocab_size": 2, "vocab_size": 30522,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(released))
    for config in (modeling.BertConfig.from_json_file(path), modeling.BertConfig(str(path)), modeling.BertConfig.from_dict(released)):
        assert config.to_json_string() == json.dumps(released, indent=2, sort_keys=True) + "\n"
        assert config.cell == {} and config.structure == []
        assert config.use_relative_position is False and config.max_relative_position == 64
    built = modeling.BertConfig(30522, hidden_size=312, num_hidden_layers=4, intermediate_size=1200)
    assert set(built.to_dict()) == set(released) - {"cell", "emb_size", "structure"}
    built.to_json_file(tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == built.to_dict()

    (tmp_path / "bad.json").write_text('{\n  "vocab_size": 10,\n  "hidden_size": \n}')
    with pytest.raises(InputError) as err:
        modeling.BertConfig.from_json_file(tmp_path / "bad.json")
    assert err.value.line == 4 and err.value.path.endswith("bad.json")


def test_student_state_dict_names_and_parameter_counts():
    config = modeling.BertConfig(30522, hidden_size=312, num_hidden_layers=4, intermediate_size=1200)
    with torch.device("meta"):
        student = modeling.TinyBertForSequenceClassification(config, num_labels=3)
        pretraining = modeling.TinyBertForPreTraining(config)
    shapes = {key: tuple(value.shape) for key, value in student.state_dict().items()}
    assert shapes["bert.embeddings.word_embeddings.weight"] == (30522, 312)
    assert shapes["bert.embeddings.position_embeddings.weight"] == (512, 312)
    assert shapes["bert.encoder.layer.3.intermediate.dense.weight"] == (1200, 312)
    assert shapes["bert.encoder.layer.3.output.dense.weight"] == (312, 1200)
    assert shapes["classifier.weight"] == (3, 312) and shapes["fit_dense.weight"] == (768, 312)
    per_layer = [
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm",
    ]
    expected = {
        f"bert.embeddings.{name}" for name in
        ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")
    }
    expected |= {f"bert.encoder.layer.{i}.{m}.{p}" for i in range(4) for m in per_layer for p in ("weight", "bias")}
    expected |= {f"{m}.{p}" for m in ("bert.pooler.dense", "classifier", "fit_dense") for p in ("weight", "bias")}
    assert set(shapes) == expected
    assert {k for k in pretraining.state_dict() if k.startswith("cls.")} == {
        "cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
        "cls.predictions.decoder.weight", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
    }
    # Counts from the reference (original-tinybert.md §5), computed there independently of this code.
    def count(model):
        return sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        assert count(modeling.BertModel(config)) == 14_350_248
        assert count(pretraining.fit_dense) == 240_384
        assert count(modeling.BertModel(modeling.BertConfig(30522, num_hidden_layers=6))) == 66_955_008
        assert count(modeling.BertModel(modeling.BertConfig(30522))) == 109_482_240


def test_initialisation_as_the_original():
    torch.manual_seed(0)
    model = modeling.BertModel(tiny_config(hidden_size=64, intermediate_size=256, initializer_range=0.05))
    weight = model.encoder.layer[0].intermediate.dense.weight
    assert abs(weight.std().item() - 0.05) < 0.004 and abs(weight.mean().item()) < 0.004
    assert model.embeddings.word_embeddings.weight[0].abs().sum() > 0  # padding row drawn too, as the original
    assert torch.all(model.encoder.layer[0].intermediate.dense.bias == 0)
    assert torch.all(model.embeddings.LayerNorm.weight == 1) and torch.all(model.embeddings.LayerNorm.bias == 0)


def test_activations_follow_their_formulas():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    erf_form = x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    tanh_form = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    assert torch.allclose(modeling.get_activation("gelu")(x), erf_form, atol=1e-12)
    assert torch.allclose(modeling.get_activation("gelu_new")(x), tanh_form, atol=1e-12)
    assert (erf_form - tanh_form).abs().max() > 1e-4  # the two forms really differ
    with pytest.raises(InputError, match="hidden_act 'mish'"):
        modeling.BertModel(tiny_config(hidden_act="mish"))


def test_relative_position_table_matches_the_tensorflow_vectors():
    table = modeling.relative_position_table(64, 64)
    assert table.shape == (129, 64) and table.dtype == torch.float32
    assert torch.equal(table[0, :4], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(
        table[64, :6], torch.tensor([0.92002606, 0.39185724, -0.7639029, -0.6453312, -0.99042827, -0.13802862])
    )
    torch.testing.assert_close(table[128, :4], torch.tensor([0.7210377, -0.6928958, 0.98594075, -0.16709535]))
    assert abs(table.sum().item() - 2773.7336) < 1e-3
    relations = modeling.relative_positions(table, 70, 64)
    assert torch.equal(relations[0, 69], table[128]) and torch.equal(relations[69, 0], table[0])
    assert torch.equal(relations[5, 5], table[64]) and torch.equal(relations[3, 10], table[71])


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_bert_equals_hugging_face(hidden_act):
    torch.manual_seed(1)
    config = tiny_config(hidden_act=hidden_act)
    theirs = transformers.BertModel(transformers.BertConfig(**hf_kwargs(config))).eval()
    ours = modeling.BertModel(config).eval()
    info = load_state_dict_into(ours, theirs.state_dict(), "hf")
    assert info == {"missing_keys": [], "unexpected_keys": []}
    input_ids, token_type_ids, mask = batch()
    with torch.no_grad():
        layers, atts, pooled = _layers_atts_pooled(ours(input_ids, token_type_ids, mask))
        out = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids, output_hidden_states=True, output_attentions=True)
    assert len(layers) == config.num_hidden_layers + 1 == len(out.hidden_states)
    for mine, hf in zip(layers, out.hidden_states):
        assert_close(mine, hf)
    for scores, probs in zip(atts, out.attentions):
        assert_close(torch.softmax(scores, dim=-1), probs)
        # masked keys carry the original's additive -10000
        assert scores[2, :, :, 3:].max() < -9000 and scores[0].min() > -100
    assert_close(pooled, out.pooler_output)


def test_nezha_relative_attention_equals_hugging_face():
    torch.manual_seed(2)
    config = tiny_config(hidden_act="gelu_new", use_relative_position=True, max_relative_position=5)
    hf_config = transformers.NezhaConfig(**hf_kwargs(config), max_relative_position=5)
    theirs = transformers.NezhaModel(hf_config).eval()
    ours = modeling.BertModel(config).eval()
    assert not hasattr(ours.embeddings, "position_embeddings")
    assert load_state_dict_into(ours, theirs.state_dict(), "hf") == {"missing_keys": [], "unexpected_keys": []}
    input_ids, token_type_ids, mask = batch(length=14)  # longer than 2K+1: distances are clipped
    with torch.no_grad():
        layers, atts, pooled = _layers_atts_pooled(ours(input_ids, token_type_ids, mask))
        out = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids, output_hidden_states=True, output_attentions=True)
    for mine, hf in zip(layers, out.hidden_states, strict=True):
        assert_close(mine, hf)
    for scores, probs in zip(atts, out.attentions, strict=True):
        assert_close(torch.softmax(scores, dim=-1), probs)
    assert_close(pooled, out.pooler_output)


@pytest.mark.parametrize("relative", [False, True])
def test_fast_path_equals_the_explicit_path(relative):
    torch.manual_seed(3)
    config = tiny_config(use_relative_position=relative)
    model = modeling.BertModel(config).eval()
    input_ids, token_type_ids, mask = batch()
    with torch.no_grad():
        slow_layers, atts, slow_pooled = _layers_atts_pooled(model(input_ids, token_type_ids, mask))
        fast_layers, _, fast_pooled = _layers_atts_pooled(model(input_ids, token_type_ids, mask, output_att=False))
        last = model(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False).hidden_states
    assert len(atts) == config.num_hidden_layers
    for slow, fast in zip(slow_layers, fast_layers, strict=True):
        assert_close(slow, fast)
    assert_close(slow_pooled, fast_pooled)
    assert torch.equal(last, fast_layers[-1])


def test_training_mode_fast_path_applies_dropout():
    torch.manual_seed(4)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)
    model = modeling.BertModel(config).train()
    input_ids, token_type_ids, mask = batch()
    first = model(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False).hidden_states
    second = model(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False).hidden_states
    assert (first - second).abs().max() > 1e-3
    model.eval()
    third = model(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False).hidden_states
    fourth = model(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False).hidden_states
    assert torch.equal(third, fourth)


def test_sequence_classification_head_is_relu_of_pooled_without_dropout():
    torch.manual_seed(5)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = modeling.TinyBertForSequenceClassification(config, num_labels=3, fit_size=48)
    assert config.fit_size == 48 and model.fit_dense.out_features == 48
    input_ids, token_type_ids, mask = batch()
    logits, atts, layers = model(input_ids, token_type_ids, mask)
    pooled = model.bert(input_ids, token_type_ids, mask).pooled_output
    expected = pooled.clamp(min=0) @ model.classifier.weight.T + model.classifier.bias
    assert_close(logits, expected)
    assert layers[0].shape[-1] == 32 and len(atts) == 3
    _, _, projected = model(input_ids, token_type_ids, mask, is_student=True)
    assert len(projected) == 4
    for hidden, fitted in zip(layers, projected):
        assert_close(fitted, hidden @ model.fit_dense.weight.T + model.fit_dense.bias)

    pretraining = modeling.TinyBertForPreTraining(tiny_config())
    assert pretraining.fit_dense.out_features == 768
    att_output, fitted = pretraining(input_ids, token_type_ids, mask)
    assert len(att_output) == 3 and len(fitted) == 4 and fitted[0].shape == (3, 12, 768)


def test_masked_lm_token_and_span_heads_equal_hugging_face():
    torch.manual_seed(6)
    config = tiny_config()
    kwargs = hf_kwargs(config)
    input_ids, token_type_ids, mask = batch()

    theirs = transformers.BertForMaskedLM(transformers.BertConfig(**kwargs)).eval()
    ours = modeling.BertForMaskedLM(config).eval()
    info = load_state_dict_into(ours, theirs.state_dict(), "hf")
    assert info["missing_keys"] == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]  # HF's MLM has no pooler
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    labels = torch.full_like(input_ids, -1)
    labels[:, 2] = input_ids[:, 2]
    with torch.no_grad():
        hf = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids, labels=labels.masked_fill(labels == -1, -100))
        assert_close(ours(input_ids, token_type_ids, mask).logits, hf.logits, 1e-4)
        _, loss, atts = ours(input_ids, token_type_ids, mask, masked_lm_labels=labels, output_att=True)
    assert abs(loss.item() - hf.loss.item()) < 1e-5 and len(atts) == 3

    theirs = transformers.BertForTokenClassification(transformers.BertConfig(**kwargs, num_labels=5)).eval()
    ours = modeling.TinyBertForTokenClassification(config, num_labels=5).eval()
    assert load_state_dict_into(ours, theirs.state_dict(), "hf")["missing_keys"] == [
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "fit_dense.weight", "fit_dense.bias"
    ]
    with torch.no_grad():
        logits, _, _ = ours(input_ids, token_type_ids, mask)
        assert_close(logits, theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits)

    theirs = transformers.BertForQuestionAnswering(transformers.BertConfig(**kwargs)).eval()
    ours = modeling.TinyBertForQuestionAnswering(config).eval()
    load_state_dict_into(ours, theirs.state_dict(), "hf")
    with torch.no_grad():
        start, end, _, _ = ours(input_ids, token_type_ids, mask)
        hf = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids)
    assert_close(start, hf.start_logits)
    assert_close(end, hf.end_logits)


def test_bad_shapes_are_reported():
    with pytest.raises(InputError, match="not a multiple"):
        modeling.BertModel(tiny_config(hidden_size=30))
    model = modeling.BertModel(tiny_config(max_position_embeddings=8))
    with pytest.raises(InputError, match="exceeds max_position_embeddings 8"):
        model(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(InputError, match="position_embedding_type 'relative_key'"):
        modeling.BertModel(modeling.BertConfig.from_dict({**tiny_config().to_dict(), "position_embedding_type": "relative_key"}))
    assert F.relu is modeling.get_activation("relu")


@pytest.mark.parametrize("relative", [False, True])
def test_bfloat16_autocast_and_half_weights_stay_close_to_float32(relative):
    torch.manual_seed(7)
    model = modeling.BertModel(tiny_config(use_relative_position=relative)).eval()
    input_ids, token_type_ids, mask = batch()
    with torch.no_grad():
        reference, ref_atts, _ = _layers_atts_pooled(model(input_ids, token_type_ids, mask))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layers, atts, _ = _layers_atts_pooled(model(input_ids, token_type_ids, mask))
        assert (layers[-1].float() - reference[-1]).abs().max() < 0.1
        half = model.to(torch.bfloat16)
        layers, atts, _ = _layers_atts_pooled(half(input_ids, token_type_ids, mask))
        fast = half(input_ids, token_type_ids, mask, output_att=False).hidden_states
    assert layers[-1].dtype == torch.bfloat16 and (layers[-1].float() - reference[-1]).abs().max() < 0.15
    assert (fast[-1].float() - layers[-1].float()).abs().max() < 0.1
    # the distillation losses zero entries <= -1e2: masked keys must stay far below that in bf16
    assert atts[0][2, :, :, 3:].max() < -9000 and atts[0][0].min() > -100


@pytest.mark.parametrize("value, found", [("32", '"32"'), (None, "null"), (1.5, "1.5"), (-4, "-4")])
def test_config_values_of_the_wrong_type_name_the_file_line_and_key(tmp_path, value, found):
    path = tmp_path / "config.json"
    path.write_text('{\n  "vocab_size": 5,\n  "num_hidden_layers": %s\n}' % json.dumps(value))
    for load in (modeling.BertConfig.from_json_file, modeling.BertConfig):
        with pytest.raises(InputError) as err:
            load(str(path))
        assert str(err.value) == f"{path}:3: num_hidden_layers: expected a positive integer, found {found}"


def test_every_model_names_its_outputs_the_same_way():
    """Head outputs first, then attentions and hidden states, under one naming across the classes."""
    torch.manual_seed(8)
    config = tiny_config()
    input_ids, token_type_ids, mask = batch()
    encoder = modeling.BertModel(config).eval()
    with torch.no_grad():
        encoded = encoder(input_ids, token_type_ids, mask)
        outputs = {
            modeling.BertModel: encoded,
            modeling.TinyBertForPreTraining: modeling.TinyBertForPreTraining(config, fit_size=32)(input_ids),
            modeling.TinyBertForSequenceClassification:
                modeling.TinyBertForSequenceClassification(config, num_labels=2)(input_ids, is_student=True),
            modeling.TinyBertForTokenClassification:
                modeling.TinyBertForTokenClassification(config, num_labels=3)(input_ids),
            modeling.TinyBertForQuestionAnswering: modeling.TinyBertForQuestionAnswering(config)(input_ids),
        }
        masked_lm = modeling.BertForMaskedLM(config)(input_ids, output_att=True)
    for cls, output in outputs.items():
        assert output._fields[-2:] == ("attentions", "hidden_states"), cls
        assert len(output.attentions) == 3 and len(output.hidden_states) == 4, cls
    assert encoded._fields == ("pooled_output", "attentions", "hidden_states") and encoded.pooled_output.shape == (3, 32)
    assert outputs[modeling.TinyBertForSequenceClassification].logits.shape == (3, 2)
    assert outputs[modeling.TinyBertForTokenClassification].logits.shape == (3, 12, 3)
    assert outputs[modeling.TinyBertForQuestionAnswering].start_logits.shape == (3, 12)
    assert masked_lm._fields == ("logits", "loss", "attentions") and masked_lm.loss is None
    assert len(masked_lm.attentions) == 3 and masked_lm.logits.shape == (3, 12, config.vocab_size)
    without = encoder(input_ids, token_type_ids, mask, output_all_encoded_layers=False, output_att=False)
    assert without.attentions == [] and torch.allclose(without.hidden_states, encoded.hidden_states[-1], atol=1e-6)
