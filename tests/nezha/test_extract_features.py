"""extract_features.py end to end: Google's flags and JSON-lines format; tokens checked against Hugging Face's
BertTokenizer and values against Hugging Face's NezhaModel loaded from the same checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import checkpoint
import modeling
from utils.errors import InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LINES = ["今天天气很好 ||| 我们去公园散步。", "Hello, WORLD! 北京欢迎你", "", "这是一个很长的句子，它会被截断到最大长度为止。"]
SEQ_LENGTH = 16


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    config = modeling.BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                 intermediate_size=48, type_vocab_size=2, use_relative_position=True)
    model = modeling.BertModel(config)
    rng = np.random.default_rng(0)
    for variable in model.variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype(np.float32)
                        + (1.0 if variable.name.endswith("gamma:0") else 0.0))
    directory = tmp_path_factory.mktemp("tiny_nezha")
    (directory / "bert_config.json").write_text(config.to_json_string())
    prefix = checkpoint.save_checkpoint(directory, checkpoint.named_variables(model), step=1)
    return directory, config, prefix


def hf_hidden_states(config, prefix, ids, mask, types):
    from transformers.models.deprecated.nezha.modeling_nezha import load_tf_weights_in_nezha

    cfg = transformers.NezhaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                                   num_hidden_layers=config.num_hidden_layers,
                                   num_attention_heads=config.num_attention_heads,
                                   intermediate_size=config.intermediate_size, hidden_act="gelu_new",
                                   max_position_embeddings=SEQ_LENGTH, type_vocab_size=2, layer_norm_eps=1e-12)
    model = transformers.NezhaModel(cfg)
    holder = torch.nn.Module()
    holder.bert = model
    load_tf_weights_in_nezha(holder, cfg, prefix)
    with torch.no_grad():
        out = model.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                           token_type_ids=torch.tensor(types), output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states]


def expected_features(vocab, text):
    tokenizer = transformers.BertTokenizer(str(vocab), do_lower_case=True)
    a, _, b = text.partition(" ||| ")
    tokens_a = tokenizer.tokenize(a)
    tokens_b = tokenizer.tokenize(b) if " ||| " in text else None
    if tokens_b is None:
        tokens_a = tokens_a[:SEQ_LENGTH - 2]
        tokens, types = ["[CLS]"] + tokens_a + ["[SEP]"], [0] * (len(tokens_a) + 2)
    else:
        while len(tokens_a) + len(tokens_b) > SEQ_LENGTH - 3:
            (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
        tokens = ["[CLS]"] + tokens_a + ["[SEP]"] + tokens_b + ["[SEP]"]
        types = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    pad = SEQ_LENGTH - len(ids)
    return tokens, ids + [0] * pad, [1] * len(ids) + [0] * pad, types + [0] * pad


def test_extract_features_script_matches_hf(tmp_path, tiny_checkpoint, nezha_vocab, root):
    directory, config, prefix = tiny_checkpoint
    input_file, output_file = tmp_path / "input.txt", tmp_path / "out" / "features.jsonl"
    input_file.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(root / "NEZHA-TensorFlow" / "extract_features.py"), f"--input_file={input_file}",
         f"--output_file={output_file}", f"--bert_config_file={directory / 'bert_config.json'}",
         f"--init_checkpoint={directory}", f"--vocab_file={nezha_vocab}", "--layers=-1,-3",
         f"--max_seq_length={SEQ_LENGTH}", "--batch_size=3", "--use_tpu=true", "--num_tpu_cores=8"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in output_file.read_text().splitlines()]
    assert output_file.read_text().startswith('{"linex_index": 0, "features": [{"token": "[CLS]", "layers": '
                                              '[{"index": -1, "values": [')
    assert [r["linex_index"] for r in records] == [0, 1, 2, 3]
    expected = [expected_features(nezha_vocab, line) for line in LINES]
    hidden = hf_hidden_states(config, prefix, [e[1] for e in expected], [e[2] for e in expected],
                              [e[3] for e in expected])
    for row, (record, (tokens, *_)) in enumerate(zip(records, expected)):
        assert [f["token"] for f in record["features"]] == tokens
        for position, feature in enumerate(record["features"]):
            assert [layer["index"] for layer in feature["layers"]] == [-1, -3]
            for layer in feature["layers"]:
                values = np.array(layer["values"])
                assert values.shape == (32,)
                np.testing.assert_allclose(values, hidden[layer["index"]][row, position], atol=1e-4)
    assert [f["token"] for f in records[2]["features"]] == ["[CLS]", "[SEP]"]
    assert len(records[3]["features"]) == SEQ_LENGTH


def test_bad_inputs_stop_with_input_errors(tmp_path, tiny_checkpoint, nezha_vocab):
    import extract_features

    directory, _, _ = tiny_checkpoint
    good_input = tmp_path / "in.txt"
    good_input.write_text("你好\n", encoding="utf-8")
    args = dict(output_file=str(tmp_path / "o.jsonl"), bert_config_file=str(directory / "bert_config.json"),
                init_checkpoint=str(directory), vocab_file=str(nezha_vocab), layers="-1")
    with pytest.raises(InputError, match="--input_file not found"):
        extract_features.extract_features(str(tmp_path / "missing.txt"), **args)
    (tmp_path / "latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        extract_features.extract_features(str(tmp_path / "latin1.txt"), **args)
    assert err.value.line == 2
    with pytest.raises(InputError, match="layer -4 does not exist"):
        extract_features.extract_features(str(good_input), **{**args, "layers": "-1,-2,-3,-4"})
    with pytest.raises(InputError, match="checkpoint not found"):
        extract_features.extract_features(str(good_input), **{**args, "init_checkpoint": str(tmp_path / "none")})
    assert not (tmp_path / "o.jsonl").exists()
    extract_features.extract_features(str(good_input), **args)
    assert (tmp_path / "o.jsonl").read_text().startswith('{"linex_index": 0, "features": [{"token": "[CLS]"')
