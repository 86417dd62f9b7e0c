"""Loading every checkpoint format the PyTorch tree meets, and saving directories Hugging Face can load."""
from __future__ import annotations

import json
import logging
import shutil
import tarfile

import pytest
import torch

from transformer import modeling
from transformer.file_utils import CONFIG_NAME, WEIGHTS_NAME
from utils.errors import InputError

transformers = pytest.importorskip("transformers")


def tiny_config(**extra) -> modeling.BertConfig:
    config = modeling.BertConfig(
        120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=40
    )
    config.__dict__.update(extra)
    return config


def inputs(vocab_size: int = 120, length: int = 10):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab_size, (2, length), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1, -3:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 2 :] = 1
    return input_ids, token_type_ids, mask


def hidden_states(model, input_ids, token_type_ids, mask):
    encoder = model.bert if hasattr(model, "bert") else model
    with torch.no_grad():
        layers = encoder.eval()(input_ids, token_type_ids, mask, output_att=False).hidden_states
    return layers


def write_vocab(path, size: int) -> None:
    path.write_text("".join(f"[unused{i}]\n" for i in range(size)), encoding="utf-8")


def test_real_minilm_weights_load_and_match_hugging_face(minilm_dir):
    model, info = modeling.BertModel.from_pretrained(minilm_dir, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    theirs = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    # [CLS] the cat sat on the mat . [SEP] [PAD] ...
    input_ids = torch.tensor([[101, 1996, 4937, 2938, 2006, 1996, 13523, 1012, 102, 0, 0], [101, 7592, 2088, 102] + [0] * 7])
    mask = (input_ids != 0).long()
    with torch.no_grad():
        encoded = model.eval()(input_ids, attention_mask=mask)
        layers, atts, pooled = encoded.hidden_states, encoded.attentions, encoded.pooled_output
        out = theirs(input_ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(layers) == 7
    for mine, hf in zip(layers, out.hidden_states, strict=True):
        assert (mine - hf).abs().max() < 1e-5
    for scores, probs in zip(atts, out.attentions, strict=True):
        assert (torch.softmax(scores, -1) - probs).abs().max() < 1e-5
    assert (pooled - out.pooler_output).abs().max() < 1e-5

    student, info = modeling.TinyBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=2, output_loading_info=True)
    assert info["missing_keys"] == ["classifier.weight", "classifier.bias", "fit_dense.weight", "fit_dense.bias"]
    assert torch.equal(student.bert.encoder.layer[5].output.dense.weight, model.encoder.layer[5].output.dense.weight)


@pytest.mark.parametrize("relative", [False, True], ids=["bert", "nezha"])
def test_saved_directory_loads_in_hugging_face_automodel(tmp_path, relative):
    torch.manual_seed(0)
    extra = {"use_relative_position": True, "hidden_act": "gelu_new", "max_relative_position": 6} if relative else {}
    model = modeling.TinyBertForSequenceClassification(tiny_config(**extra), num_labels=3, fit_size=64).eval()
    vocab = tmp_path / "source_vocab.txt"
    write_vocab(vocab, 120)
    model.save_pretrained(tmp_path / "out", vocab)
    saved = json.loads((tmp_path / "out" / CONFIG_NAME).read_text())
    assert saved["model_type"] == ("nezha" if relative else "bert")
    assert saved["architectures"] == ["TinyBertForSequenceClassification"] and saved["fit_size"] == 64
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == vocab.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "pytorch_model.bin", "vocab.txt"]

    theirs = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(theirs).__name__ == ("NezhaModel" if relative else "BertModel")
    input_ids, token_type_ids, mask = inputs()
    with torch.no_grad():
        out = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids, output_hidden_states=True)
    for mine, hf in zip(hidden_states(model, input_ids, token_type_ids, mask), out.hidden_states, strict=True):
        assert (mine - hf).abs().max() < 1e-5

    again = modeling.TinyBertForSequenceClassification.from_pretrained(tmp_path / "out", num_labels=3)
    assert again.fit_dense.out_features == 64
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def original_tinybert_state_dict(model: torch.nn.Module, prefix: bool) -> dict:
    """The 2019 naming: LayerNorm gamma/beta, keys with or without `bert.`."""
    renamed = {}
    for key, value in model.state_dict().items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        if not prefix:
            key = key.removeprefix("bert.")
        renamed[key] = value.clone()
    return renamed


@pytest.mark.parametrize("prefix", [True, False], ids=["bert_prefix", "no_prefix"])
def test_original_tinybert_checkpoints_load(tmp_path, prefix):
    torch.manual_seed(1)
    config = tiny_config()
    source = modeling.TinyBertForSequenceClassification(config, num_labels=2)
    state_dict = original_tinybert_state_dict(source, prefix)
    assert any(key.endswith("LayerNorm.gamma") for key in state_dict)
    config.to_json_file(tmp_path / CONFIG_NAME)
    # legacy (pre-1.6) serialisation, as the released 2019 checkpoints were written
    torch.save(state_dict, tmp_path / WEIGHTS_NAME, _use_new_zipfile_serialization=False)

    encoder, info = modeling.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == []
    expected_unexpected = ["classifier.weight", "classifier.bias", "fit_dense.weight", "fit_dense.bias"]
    assert info["unexpected_keys"] == expected_unexpected
    input_ids, token_type_ids, mask = inputs()
    for mine, theirs in zip(hidden_states(encoder, input_ids, token_type_ids, mask), hidden_states(source, input_ids, token_type_ids, mask)):
        assert torch.equal(mine, theirs)

    student, info = modeling.TinyBertForSequenceClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    assert info == {"missing_keys": [], "unexpected_keys": []}
    assert torch.equal(student.classifier.weight, source.classifier.weight)


@pytest.mark.parametrize("safe", [False, True], ids=["bin", "safetensors"])
def test_hugging_face_directories_and_bert_config_json(tmp_path, safe):
    torch.manual_seed(2)
    hf_config = transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=40
    )
    theirs = transformers.BertForMaskedLM(hf_config).eval()
    theirs.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else WEIGHTS_NAME)).is_file()
    # Google's name for the config file, which the original loader could not read (issue #28)
    (tmp_path / CONFIG_NAME).rename(tmp_path / "bert_config.json")
    ours, info = modeling.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    assert info["unexpected_keys"] == []
    input_ids, token_type_ids, mask = inputs()
    with torch.no_grad():
        expected = theirs(input_ids, attention_mask=mask, token_type_ids=token_type_ids).logits
        assert (ours.eval()(input_ids, token_type_ids, mask).logits - expected).abs().max() < 1e-4


def test_archive_and_state_dict_keyword(tmp_path):
    torch.manual_seed(3)
    model = modeling.BertModel(tiny_config())
    model.save_pretrained(tmp_path / "model")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "model", arcname="model")
    loaded = modeling.BertModel.from_pretrained(tmp_path / "model.tar.gz")
    assert torch.equal(loaded.pooler.dense.weight, model.pooler.dense.weight)
    other = modeling.BertModel(tiny_config()).state_dict()
    loaded = modeling.BertModel.from_pretrained(tmp_path / "model", state_dict=other)
    assert torch.equal(loaded.pooler.dense.weight, other["pooler.dense.weight"])


def test_from_scratch_reads_only_the_config(tmp_path):
    tiny_config(emb_size=32).to_json_file(tmp_path / "bert_config.json")
    model = modeling.TinyBertForPreTraining.from_scratch(tmp_path)
    assert model.config.emb_size == 32 and model.fit_dense.out_features == 768
    assert model.bert.encoder.layer[1].output.dense.weight.std() > 0.01


def test_missing_and_unexpected_keys_are_warned_by_name(tmp_path, caplog):
    model = modeling.TinyBertForPreTraining(tiny_config())
    state_dict = model.state_dict()
    del state_dict["bert.encoder.layer.1.output.dense.weight"]
    state_dict["bert.encoder.layer.7.extra.weight"] = torch.zeros(2)
    model.config.to_json_file(tmp_path / CONFIG_NAME)
    torch.save(state_dict, tmp_path / WEIGHTS_NAME)
    with caplog.at_level(logging.WARNING):
        _, info = modeling.TinyBertForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": ["bert.encoder.layer.1.output.dense.weight"], "unexpected_keys": ["bert.encoder.layer.7.extra.weight"]}
    warnings = "\n".join(record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)
    assert "bert.encoder.layer.1.output.dense.weight" in warnings and "bert.encoder.layer.7.extra.weight" in warnings
    assert str(tmp_path / WEIGHTS_NAME) in warnings


def test_wrong_shapes_and_damaged_files_are_clear_errors(tmp_path):
    torch.manual_seed(4)
    model = modeling.BertModel(tiny_config())
    model.save_pretrained(tmp_path / "good")

    wrong = tmp_path / "wrong"
    shutil.copytree(tmp_path / "good", wrong)
    config = json.loads((wrong / CONFIG_NAME).read_text())
    config["intermediate_size"] = 40
    (wrong / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(InputError) as err:
        modeling.BertModel.from_pretrained(wrong)
    message = str(err.value)
    assert "encoder.layer.0.intermediate.dense.weight" in message and "(48, 32)" in message and "(40, 32)" in message
    assert err.value.path == str(wrong / WEIGHTS_NAME)

    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "good", truncated)
    data = (truncated / WEIGHTS_NAME).read_bytes()
    (truncated / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        modeling.BertModel.from_pretrained(truncated)
    assert err.value.path == str(truncated / WEIGHTS_NAME)

    from safetensors.torch import save_file

    safe = tmp_path / "safe"
    safe.mkdir()
    shutil.copy(tmp_path / "good" / CONFIG_NAME, safe / CONFIG_NAME)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, safe / "model.safetensors")
    data = (safe / "model.safetensors").read_bytes()
    (safe / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        modeling.BertModel.from_pretrained(safe)
    assert err.value.path == str(safe / "model.safetensors")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no config.json or bert_config.json"):
        modeling.BertModel.from_pretrained(empty)
    shutil.copy(tmp_path / "good" / CONFIG_NAME, empty / CONFIG_NAME)
    (empty / "model.ckpt-10.index").write_bytes(b"")
    with pytest.raises(InputError, match="TensorFlow checkpoint"):
        modeling.BertModel.from_pretrained(empty)
    with pytest.raises(InputError, match="not found"):
        modeling.BertModel.from_pretrained(tmp_path / "absent")
