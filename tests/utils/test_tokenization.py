"""The shared tokenizer against Hugging Face's slow BertTokenizer (an independent implementation) and by hand."""
from __future__ import annotations

import csv

import pytest

from utils import tokenization
from utils.errors import InputError


def _hf_tokenizer(vocab_file):
    transformers = pytest.importorskip("transformers")
    # Our WordPiece limit is Google's 200 characters; HF's slow tokenizer uses 100. No word in these texts
    # reaches either limit (checked below), so the two must agree token for token.
    return transformers.BertTokenizer(str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True)


def _assert_same_ids(ours, theirs, lines):
    compared = 0
    for line in lines:
        ids = ours.convert_tokens_to_ids(ours.tokenize(line))
        expected = theirs.convert_tokens_to_ids(theirs.tokenize(line))
        assert ids == expected, line
        compared += 1
    return compared


def test_ids_equal_hugging_face_on_chinese_wikipedia(shared_data, nezha_vocab):
    lines = (shared_data / "cn_wiki_sample.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 8000
    ours = tokenization.FullTokenizer(nezha_vocab, do_lower_case=True)
    assert max(len(w) for line in lines for w in ours.basic_tokenizer.tokenize(line)) < 100
    assert _assert_same_ids(ours, _hf_tokenizer(nezha_vocab), lines) == len(lines)


def test_ids_equal_hugging_face_on_mrpc_with_minilm_vocab(shared_data, minilm_dir):
    sentences = []
    for name in ("train.tsv", "dev.tsv"):
        with open(shared_data / "mrpc" / name, encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quotechar=None))[1:]
        sentences += [row[3] for row in rows] + [row[4] for row in rows]
    vocab = minilm_dir / "vocab.txt"
    ours = tokenization.FullTokenizer(vocab)
    assert _assert_same_ids(ours, _hf_tokenizer(vocab), sentences) == len(sentences) == 396


@pytest.fixture
def small_vocab(tmp_path):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "runn", "##ing", "the",
              "cafe", ",", "!", "中", "国", "人", "hello", "world", "##s"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def test_basic_tokenizer_by_hand():
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    # Accents stripped when lower-casing, punctuation split, CJK characters split, control characters dropped.
    assert basic.tokenize(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]
    assert basic.tokenize("Café Déjà vu") == ["cafe", "deja", "vu"]
    assert basic.tokenize("我爱China。") == ["我", "爱", "china", "。"]
    assert basic.tokenize("a\x00b\ufffdc\u200bd\x07e") == ["abcde"]
    assert basic.tokenize("[MASK] is [CLS]") == ["[MASK]", "is", "[CLS]"]
    cased = tokenization.BasicTokenizer(do_lower_case=False)
    assert cased.tokenize("Café Déjà") == ["Café", "Déjà"]


def test_wordpiece_greedy_longest_match_and_unknowns(small_vocab):
    tokenizer = tokenization.FullTokenizer(small_vocab)
    assert tokenizer.tokenize("unaffable running") == ["un", "##aff", "##able", "runn", "##ing"]
    assert tokenizer.tokenize("unrunnable") == ["[UNK]"]
    assert tokenizer.tokenize("中国人民") == ["中", "国", "人", "[UNK]"]
    limited = tokenization.WordpieceTokenizer(tokenizer.vocab, max_input_chars_per_word=5)
    assert limited.tokenize("hellos hello") == ["[UNK]", "hello"]
    assert tokenizer.convert_tokens_to_ids(["the", "zzz"]) == [10, 1]
    assert tokenizer.convert_ids_to_tokens([17, 19]) == ["hello", "##s"]


def test_from_pretrained_and_save_vocabulary_round_trip(small_vocab, tmp_path):
    from_dir = tokenization.BertTokenizer.from_pretrained(small_vocab.parent, do_lower_case=False, max_len=512)
    assert not from_dir.do_lower_case
    out = tmp_path / "out"
    out.mkdir()
    written = from_dir.save_vocabulary(out)
    assert written == str(out / "vocab.txt")
    assert (out / "vocab.txt").read_text(encoding="utf-8") == small_vocab.read_text(encoding="utf-8")


def test_missing_or_empty_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="vocabulary file not found"):
        tokenization.FullTokenizer(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        tokenization.FullTokenizer(tmp_path / "empty.txt")


def test_whole_word_continuations_follow_jieba_and_wordpieces():
    import jieba

    tokens = ["[CLS]", "我", "爱", "北", "京", "天", "安", "门", "[SEP]", "un", "##aff", "##able", "[SEP]"]
    flags = tokenization.whole_word_continuations(tokens)
    words = jieba.lcut("我爱北京天安门")
    expected = [False]
    for word in words:
        expected += [False] + [True] * (len(word) - 1)
    expected += [False, False, True, True, False]
    assert flags == expected
    assert words == ["我", "爱", "北京", "天安门"]


def test_whole_word_groups_on_real_sentences_rebuild_jieba_words(nezha_vocab):
    import jieba

    tokenizer = tokenization.FullTokenizer(nezha_vocab)
    sentence = "中华人民共和国成立于1949年，首都是北京。"
    tokens = tokenizer.tokenize(sentence)
    flags = tokenization.whole_word_continuations(tokens)
    groups = []
    for token, continues in zip(tokens, flags):
        if continues:
            groups[-1] += token
        else:
            groups.append(token)
    # Each CJK run is segmented as jieba segments it; digits and punctuation stand alone.
    assert groups == (jieba.lcut("中华人民共和国成立于") + ["1949"] + jieba.lcut("年") + ["，"]
                      + jieba.lcut("首都是北京") + ["。"])
    assert "中华人民共和国" in groups and "北京" in groups


def test_a_leading_wordpiece_or_one_after_a_special_token_starts_a_word():
    assert tokenization.whole_word_continuations(["##s", "[CLS]", "##x", "a", "##b"]) == [False, False, False,
                                                                                         False, True]


def test_a_directory_or_a_non_utf8_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(InputError) as err:
        tokenization.load_vocab(tmp_path)
    assert str(err.value) == f"{tmp_path}: the vocabulary is a directory (expected vocab.txt, one token per line)"
    gbk = tmp_path / "gbk_vocab.txt"
    gbk.write_bytes("[PAD]\n[UNK]\n".encode() + "中文\n".encode("gbk"))
    with pytest.raises(InputError) as err:
        tokenization.FullTokenizer(gbk)
    assert err.value.path == str(gbk) and err.value.line == 3
    assert err.value.message.startswith("vocabulary is not UTF-8 text")
    # from_pretrained with a model directory that has no vocab.txt names the file it looked for.
    with pytest.raises(InputError, match="vocabulary file not found") as err:
        tokenization.FullTokenizer.from_pretrained(tmp_path)
    assert err.value.path == str(tmp_path / "vocab.txt")


def test_required_special_tokens(tmp_path):
    vocab = {"[PAD]": 0, "[CLS]": 1, "a": 2}
    tokenization.require_tokens(vocab, ("[CLS]",), tmp_path / "vocab.txt")
    with pytest.raises(InputError) as err:
        tokenization.require_tokens(vocab, ("[UNK]", "[CLS]", "[SEP]"), tmp_path / "vocab.txt")
    assert str(err.value) == f"{tmp_path / 'vocab.txt'}: the vocabulary lacks [UNK], [SEP] (expected a BERT vocab.txt)"
