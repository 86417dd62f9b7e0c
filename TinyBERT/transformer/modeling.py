"""BERT and NEZHA encoders for TinyBERT distillation (a PyTorch 2 port of TinyBERT's transformer/modeling.py).

Modules and parameters carry the original TinyBERT (= Hugging Face) names, so loading any BERT checkpoint is
a rename at most. The encoder returns every hidden state (embedding output first) and every layer's
pre-softmax, masked attention scores: the tensors the distillation losses compare. With
`use_relative_position` the attention is NEZHA's functional relative position encoding, exactly as the
TensorFlow tree computes it, so a converted NEZHA checkpoint can be the teacher.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import InputError
from utils.fileio import atomic_open
from utils.model_config import check_config

from . import checkpoints

logger = logging.getLogger(__name__)

DEFAULT_FIT_SIZE = 768


class BertConfig:
    """Model hyper-parameters; every key of a JSON config is kept (and written back), known or not.

    Class attributes give the defaults of keys the original TinyBERT config did not have, so a plain BERT
    config serialises exactly as the original's while NEZHA and Hugging Face keys are still honoured.
    """

    use_relative_position: bool = False
    max_relative_position: int = 64
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    fit_size: Optional[int] = None
    classifier_act: str = "relu"

    def __init__(
        self,
        vocab_size_or_config_json_file: Union[int, str, os.PathLike],
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: Union[str, Callable] = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        pre_trained: str = "",
        training: str = "",
    ):
        if isinstance(vocab_size_or_config_json_file, (str, os.PathLike)):
            self.__dict__.update(_read_json_object(vocab_size_or_config_json_file))
        elif isinstance(vocab_size_or_config_json_file, int):
            # the original TinyBERT config keys
            self.__dict__.update(
                vocab_size=vocab_size_or_config_json_file, hidden_size=hidden_size,
                num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads, hidden_act=hidden_act,
                intermediate_size=intermediate_size, hidden_dropout_prob=hidden_dropout_prob,
                attention_probs_dropout_prob=attention_probs_dropout_prob,
                max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
                initializer_range=initializer_range, pre_trained=pre_trained, training=training)
        else:
            raise ValueError("First argument must be either a vocabulary size (int) or the path to a config file (str)")

    @classmethod
    def from_dict(cls, json_object: Mapping[str, Any]) -> "BertConfig":
        config = cls(vocab_size_or_config_json_file=-1)
        config.__dict__.update(json_object)
        return config

    @classmethod
    def from_json_file(cls, json_file: Union[str, os.PathLike]) -> "BertConfig":
        return cls.from_dict(_read_json_object(json_file))

    def __repr__(self) -> str:
        return self.to_json_string()

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike]) -> None:
        with atomic_open(json_file_path) as writer:
            writer.write(self.to_json_string())


def _read_json_object(path: Union[str, os.PathLike]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as reader:
            text = reader.read()
        value = json.loads(text)
    except FileNotFoundError:
        raise InputError("config file not found", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the config file ({getattr(err, 'strerror', None) or err})", path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON ({err.msg})", path, err.lineno) from None
    if not isinstance(value, dict):
        raise InputError("expected a JSON object of model hyper-parameters", path)
    check_config(value, path, text)
    return value


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact (erf) GELU of the original TinyBERT and pytorch-pretrained-bert."""
    return F.gelu(x)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation used by Google BERT and NEZHA in TensorFlow; converted checkpoints need it."""
    return F.gelu(x, approximate="tanh")


ACT2FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": gelu,
    "gelu_new": gelu_new,
    "relu": F.relu,
    "swish": F.silu,
}


def get_activation(hidden_act: Union[str, Callable]) -> Callable[[torch.Tensor], torch.Tensor]:
    if not isinstance(hidden_act, str):
        return hidden_act
    if hidden_act not in ACT2FN:
        raise InputError(f"config: hidden_act '{hidden_act}' is not one of {sorted(ACT2FN)}")
    return ACT2FN[hidden_act]


def relative_position_table(max_relative_position: int, depth: int) -> torch.Tensor:
    """NEZHA's sinusoid table, [2K+1, depth], indexed by the shifted distance clip(j - i, -K, K) + K.

    Built in float64 and rounded once, as the TensorFlow code builds it in NumPy; the argument is the
    shifted index, not the signed distance the paper writes (released weights depend on this).
    """
    positions = torch.arange(2 * max_relative_position + 1, dtype=torch.float64)[:, None]
    pairs = torch.arange(depth // 2, dtype=torch.float64)[None, :]
    angles = positions / torch.pow(10000.0, 2.0 * pairs / depth)
    table = torch.zeros(2 * max_relative_position + 1, depth, dtype=torch.float64)
    table[:, 0 : 2 * (depth // 2) : 2] = torch.sin(angles)
    table[:, 1 : 2 * (depth // 2) : 2] = torch.cos(angles)
    return table.to(torch.float32)


def relative_positions(table: torch.Tensor, length: int, max_relative_position: int) -> torch.Tensor:
    """R[i, j] = table[clip(j - i, -K, K) + K], shape [length, length, depth], shared by heads and layers."""
    steps = torch.arange(length, device=table.device)
    index = (steps[None, :] - steps[:, None]).clamp(-max_relative_position, max_relative_position)
    return table[index + max_relative_position]


class BertEmbeddings(nn.Module):
    """Word + position (absent for NEZHA) + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        if not config.use_relative_position:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        # Summed in Hugging Face's order (the original added positions second): equal up to rounding, and
        # rounded as theirs, so real checkpoints give bit-identical embeddings.
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "position_embeddings"):
            length = input_ids.size(1)
            if length > self.position_embeddings.num_embeddings:
                raise InputError(
                    f"sequence length {length} exceeds max_position_embeddings "
                    f"{self.position_embeddings.num_embeddings} of the model config"
                )
            embeddings = embeddings + self.position_embeddings.weight[:length]
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads != 0:
            raise InputError(
                f"config: hidden_size {config.hidden_size} is not a multiple of "
                f"num_attention_heads {config.num_attention_heads}"
            )
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        relations: Optional[torch.Tensor] = None,
        output_att: bool = True,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Return the context [B, S, H] and, when asked, the masked pre-softmax scores [B, N, S, S].

        Without scores to return and without relative positions, one fused scaled_dot_product_attention
        call does the same arithmetic; NEZHA needs the probabilities for its value-side term, so it always
        takes the explicit path.
        """
        scores = None
        # Three [H, H] products, as Hugging Face: fusing them into one [H, 3H] product measured no faster on CPU.
        query = self._heads(self.query(hidden_states))  # [B, N, S, d]
        key = self._heads(self.key(hidden_states))
        value = self._heads(self.value(hidden_states))
        if relations is None and not output_att:
            dropout_p = self.dropout.p if self.training else 0.0
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout_p)
        else:
            scores = torch.matmul(query, key.transpose(-1, -2))  # [B, N, S, S]
            if relations is not None:
                scores = scores + torch.einsum("bnid,ijd->bnij", query, relations)
            scores = scores / math.sqrt(self.attention_head_size)
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = self.dropout(torch.softmax(scores, dim=-1))
            context = torch.matmul(probs, value)  # [B, N, S, d]
            if relations is not None:
                context = context + torch.einsum("bnij,ijd->bnid", probs, relations)
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, self.all_head_size)
        return context, scores


class ResidualOutput(nn.Module):
    """LayerNorm(dropout(dense(x)) + residual), from `input_size` back to the hidden size: the output of
    attention (Hugging Face's BertSelfOutput) and of the feed-forward layer (BertOutput)."""

    def __init__(self, config: BertConfig, input_size: int):
        super().__init__()
        self.dense = nn.Linear(input_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = ResidualOutput(config, config.hidden_size)

    def forward(self, input_tensor, attention_mask, relations=None, output_att=True):
        context, scores = self.self(input_tensor, attention_mask, relations, output_att)
        return self.output(context, input_tensor), scores


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = ResidualOutput(config, config.intermediate_size)

    def forward(self, hidden_states, attention_mask, relations=None, output_att=True):
        attention_output, scores = self.attention(hidden_states, attention_mask, relations, output_att)
        return self.output(self.intermediate(attention_output), attention_output), scores


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor],
                relations: Optional[torch.Tensor] = None,
                output_att: bool = True) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return N+1 hidden states (the input first) and N attention score tensors (empty without output_att)."""
        all_layers = [hidden_states]
        all_atts = []
        for layer in self.layer:
            hidden_states, scores = layer(hidden_states, attention_mask, relations, output_att)
            all_layers.append(hidden_states)
            if output_att:
                all_atts.append(scores)
        return all_layers, all_atts


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(sequence_output[:, 0]))


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = get_activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Masked-LM scores; the decoder weight is the word embedding matrix (tied), the bias its own."""

    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        vocab_size, hidden_size = bert_model_embedding_weights.shape
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.decoder.weight = bert_model_embedding_weights
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states)) + self.bias


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig, bert_model_embedding_weights: nn.Parameter):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, bert_model_embedding_weights)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor):
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


class BertPreTrainedModel(nn.Module):
    """Weight initialisation, loading and saving shared by every model class."""

    def __init__(self, config: BertConfig, *inputs, **kwargs):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise ValueError(
                f"Parameter config in `{type(self).__name__}(config)` should be an instance of class `BertConfig`. "
                f"To create a model from a pretrained model use `{type(self).__name__}.from_pretrained(PATH)`"
            )
        if config.position_embedding_type not in ("absolute", None):
            raise InputError(
                f"config: position_embedding_type '{config.position_embedding_type}' is not supported "
                "(absolute positions, or NEZHA's relative ones with use_relative_position)"
            )
        self.config = config

    def init_bert_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) weights (padding row included), zero biases, LayerNorm 1/0."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    @classmethod
    def from_scratch(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *inputs, **kwargs):
        """A randomly initialised model from the directory's config.json (or bert_config.json)."""
        config = BertConfig.from_json_file(checkpoints.find_config_file(pretrained_model_name_or_path))
        logger.info("Model config %s", config)
        return cls(config, *inputs, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *inputs, **kwargs):
        """Build the model from a directory, a .tar.gz archive or a URL of either, and load its weights.

        Reads config.json or bert_config.json, and pytorch_model.bin or model.safetensors. Accepts the
        original TinyBERT names (LayerNorm gamma/beta), Google BERT converted to PyTorch and Hugging Face
        BERT/NEZHA checkpoints, with or without the `bert.` prefix. Keyword arguments: `state_dict` (use
        these weights instead of the file), `from_tf` (read the directory's TF1 checkpoint model.ckpt),
        `cache_dir` (for URLs), `output_loading_info` (also return the missing and unexpected keys); the
        rest go to the class constructor (e.g. num_labels). Missing and unexpected keys are logged as
        warnings with their names; a shape mismatch or an unreadable file is an InputError.
        """
        state_dict = kwargs.pop("state_dict", None)
        from_tf = kwargs.pop("from_tf", False)
        cache_dir = kwargs.pop("cache_dir", None)
        output_loading_info = kwargs.pop("output_loading_info", False)
        with checkpoints.resolve_model_files(
            pretrained_model_name_or_path, cache_dir=cache_dir, weights=state_dict is None, from_tf=from_tf
        ) as files:
            config = BertConfig.from_json_file(files.config)
            logger.info("Model config %s", config)
            model = cls(config, *inputs, **kwargs)
            source = files.weights if state_dict is None else "the given state_dict"
            if state_dict is None:
                state_dict = checkpoints.read_weights(files.weights, from_tf=from_tf)
            info = checkpoints.load_state_dict_into(model, state_dict, source)
        if output_loading_info:
            return model, info
        return model

    def save_pretrained(self, save_directory: Union[str, os.PathLike], tokenizer_or_vocab: Any = None) -> None:
        """Write pytorch_model.bin, config.json (loadable by Hugging Face AutoModel) and vocab.txt, each atomically.

        `tokenizer_or_vocab`: a tokenizer (anything with a `vocab` mapping or `save_vocabulary`), a vocab.txt
        path, or a directory holding one.
        """
        checkpoints.write_model_directory(
            save_directory,
            self.state_dict(),
            checkpoints.export_config(self.config.to_dict(), type(self).__name__),
            tokenizer_or_vocab,
        )


# Every model returns a named tuple: its head's outputs first, then `attentions` (each layer's pre-softmax scores
# [B, heads, S, S] with the additive mask (1 - mask) * -10000 added, before dropout; [] without output_att),
# then `hidden_states` (N+1 tensors [B, S, H], the embedding output first; a student's through fit_dense).

class EncoderOutput(NamedTuple):
    pooled_output: torch.Tensor  # [B, H]: tanh(dense(last hidden state of [CLS]))
    attentions: list[torch.Tensor]
    hidden_states: Union[list[torch.Tensor], torch.Tensor]  # the last layer's alone: output_all_encoded_layers=False


class DistillationOutput(NamedTuple):
    attentions: list[torch.Tensor]
    hidden_states: list[torch.Tensor]


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # [B, num_labels] (sequence classification) or [B, S, num_labels] (per token)
    attentions: list[torch.Tensor]
    hidden_states: list[torch.Tensor]


class SpanOutput(NamedTuple):
    start_logits: torch.Tensor  # [B, S]
    end_logits: torch.Tensor    # [B, S]
    attentions: list[torch.Tensor]
    hidden_states: list[torch.Tensor]


class MaskedLMOutput(NamedTuple):
    logits: torch.Tensor            # [B, S, vocab]
    loss: Optional[torch.Tensor]    # mean cross-entropy over labels != -1, with masked_lm_labels
    attentions: list[torch.Tensor]


class BertModel(BertPreTrainedModel):
    """The encoder: embeddings, N transformer layers and the tanh pooler over [CLS]."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        if config.use_relative_position:
            table = relative_position_table(
                config.max_relative_position, config.hidden_size // config.num_attention_heads
            )
            self.register_buffer("relative_position_table", table, persistent=False)
        self.apply(self.init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        output_all_encoded_layers: bool = True,
        output_att: bool = True,
    ) -> EncoderOutput:
        """The pooled output, every layer's attention scores (none without output_att, which lets attention
        take the fused kernel) and every hidden state (the last alone with output_all_encoded_layers=False)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        extended_mask = None
        # An all-ones mask adds zeros: skipping it lets scaled_dot_product_attention take its unmasked kernel.
        if attention_mask is not None and not bool(attention_mask.all()):
            dtype = self.embeddings.word_embeddings.weight.dtype
            extended_mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * -10000.0
        relations = None
        if self.config.use_relative_position:
            relations = relative_positions(
                self.relative_position_table, input_ids.size(1), self.config.max_relative_position
            )
        embedding_output = self.embeddings(input_ids, token_type_ids)
        encoded_layers, layer_atts = self.encoder(embedding_output, extended_mask, relations, output_att)
        hidden_states = encoded_layers if output_all_encoded_layers else encoded_layers[-1]
        return EncoderOutput(self.pooler(encoded_layers[-1]), layer_atts, hidden_states)


def _fit_size(config: BertConfig, fit_size: Optional[int]) -> int:
    """The projection width: given explicitly (then kept in the config, so a reload rebuilds it), or the config's, or 768."""
    if fit_size is None:
        return config.fit_size or DEFAULT_FIT_SIZE
    config.fit_size = fit_size
    return fit_size


class TinyBertForPreTraining(BertPreTrainedModel):
    """The general-distillation student: attention scores and every hidden state through one shared fit_dense."""

    def __init__(self, config: BertConfig, fit_size: Optional[int] = None):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config, self.bert.embeddings.word_embeddings.weight)
        self.fit_dense = nn.Linear(config.hidden_size, _fit_size(config, fit_size))
        self.apply(self.init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> DistillationOutput:
        """Every attention score tensor and every hidden state through fit_dense."""
        encoded = self.bert(input_ids, token_type_ids, attention_mask)
        return DistillationOutput(encoded.attentions, [self.fit_dense(layer) for layer in encoded.hidden_states])


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head (cls.predictions.*), used by data augmentation."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings.weight)
        self.apply(self.init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_lm_labels=None,
                output_att=False) -> MaskedLMOutput:
        """Prediction scores, and the masked-LM loss (labels -1 ignored) when masked_lm_labels are given."""
        encoded = self.bert(input_ids, token_type_ids, attention_mask, output_all_encoded_layers=False,
                            output_att=output_att)
        logits = self.cls(encoded.hidden_states)
        loss = None
        if masked_lm_labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), masked_lm_labels.view(-1), ignore_index=-1)
        return MaskedLMOutput(logits, loss, encoded.attentions)


def _student_states(model: nn.Module, encoded: EncoderOutput, is_student: bool) -> list[torch.Tensor]:
    """The hidden states a task model returns: through its fit_dense when it is the student."""
    if not is_student:
        return encoded.hidden_states
    return [model.fit_dense(layer) for layer in encoded.hidden_states]


CLASSIFIER_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "none": lambda pooled: pooled,
}


class TinyBertForSequenceClassification(BertPreTrainedModel):
    """Teacher and student of task distillation: logits = classifier(relu(pooled)), no dropout, as the original.

    The paper's results come from this head (maintainers, issue #14); a teacher fine-tuned with the usual
    classifier(dropout(pooled)) head gets different logits here. The config key classifier_act ("relu",
    the default, or "none") selects the activation, so a classifier converted from NEZHA-TensorFlow's
    run_classifier.py (logits = pooled W^T + b) keeps its exact logits.
    """

    def __init__(self, config: BertConfig, num_labels: int, fit_size: Optional[int] = None):
        super().__init__(config)
        if config.classifier_act not in CLASSIFIER_ACTIVATIONS:
            raise InputError(
                f"config: classifier_act '{config.classifier_act}' is not one of {sorted(CLASSIFIER_ACTIVATIONS)}"
            )
        self.classifier_act = CLASSIFIER_ACTIVATIONS[config.classifier_act]
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.fit_dense = nn.Linear(config.hidden_size, _fit_size(config, fit_size))
        self.apply(self.init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, is_student=False) -> ClassifierOutput:
        """Logits [B, num_labels]; with is_student every hidden state goes through fit_dense."""
        encoded = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.classifier_act(encoded.pooled_output))
        return ClassifierOutput(logits, encoded.attentions, _student_states(self, encoded, is_student))


class TinyBertForTokenClassification(BertPreTrainedModel):
    """Per-token labels (NER) for BERT/NEZHA teachers and their students: classifier(dropout(h_last)).

    Names follow Hugging Face's BertForTokenClassification (`classifier`), so its checkpoints load.
    """

    def __init__(self, config: BertConfig, num_labels: int, fit_size: Optional[int] = None):
        super().__init__(config)
        self.num_labels = num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.fit_dense = nn.Linear(config.hidden_size, _fit_size(config, fit_size))
        self.apply(self.init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, is_student=False) -> ClassifierOutput:
        """Logits [B, S, num_labels]; with is_student every hidden state goes through fit_dense."""
        encoded = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(encoded.hidden_states[-1]))
        return ClassifierOutput(logits, encoded.attentions, _student_states(self, encoded, is_student))


class TinyBertForQuestionAnswering(BertPreTrainedModel):
    """Extractive reading comprehension (CMRC/SQuAD): start and end logits from one Linear(H, 2), `qa_outputs`
    as in Hugging Face's BertForQuestionAnswering (NEZHA's TF head `cls/squad/output_*` converts to it)."""

    def __init__(self, config: BertConfig, fit_size: Optional[int] = None):
        super().__init__(config)
        self.bert = BertModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.fit_dense = nn.Linear(config.hidden_size, _fit_size(config, fit_size))
        self.apply(self.init_bert_weights)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, is_student=False) -> SpanOutput:
        """Start and end logits [B, S]; with is_student every hidden state goes through fit_dense."""
        encoded = self.bert(input_ids, token_type_ids, attention_mask)
        start_logits, end_logits = self.qa_outputs(encoded.hidden_states[-1]).unbind(dim=-1)
        return SpanOutput(start_logits, end_logits, encoded.attentions, _student_states(self, encoded, is_student))

