"""Models that read a report: a head on frozen embeddings, encoder + head end to end, TF-IDF.

``TextHead`` is the paper's text model as trained here: an MLP on the frozen encoder's pooled
embedding (cached, so an epoch takes a fraction of a second). ``TextClassifier`` wraps encoder +
head for end-to-end fine-tuning and for explaining raw text; its head is a ``TextHead`` on the
pooled embedding or a ``LabelAttentionHead``, which lets each label read its own words. ``TfidfBaseline`` is the classic
bag of words: TF-IDF features and one logistic regression per label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from torch import nn

from cxr_helpers.config import Settings
from cxr_helpers.labels import NUM_LABELS, binary_targets, label_index
from cxr_helpers.text.encoder import DEFAULT_POOLING, compute_embeddings, pool_hidden, text_pooling

HEAD_HIDDEN = 256
# The text models leave blank labels out of the loss, whatever ``settings.blank_policy`` says for the
# image: a blank means the labeler's section did not mention the finding, while the findings the text
# model reads may describe it; as a negative it would contradict the very words the model reads.
TEXT_BLANK_POLICY = "ignore"


class TextHead(nn.Module):
    """MLP on a frozen text embedding: (B, H) -> hidden -> 14 logits, dropout 0.5.

    Inputs are first standardised with per-feature training statistics (buffers ``feature_mean`` and
    ``feature_std``, identity until ``set_feature_stats`` is called): frozen embeddings have small,
    uneven scales, and without this the head needs many more epochs to learn the same thing.
    """

    input_keys = ("text_features",)

    def __init__(self, in_features: int, hidden: int = HEAD_HIDDEN, dropout: float = 0.5, num_labels: int = NUM_LABELS):
        super().__init__()
        self.in_features = in_features
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )

    def set_feature_stats(self, train_features: np.ndarray | torch.Tensor) -> TextHead:
        """Standardise inputs with the mean and std of the TRAINING embeddings (N, H)."""
        features = torch.as_tensor(np.asarray(train_features), dtype=torch.float32)
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"train_features must be (N, {self.in_features}), got {tuple(features.shape)}")
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=1e-6))
        return self

    def forward(self, text_features: torch.Tensor) -> torch.Tensor:
        standardised = (text_features - self.feature_mean) / self.feature_std  # (B, H)
        return self.mlp(standardised)  # (B, 14) logits


class LabelAttentionHead(nn.Module):
    """One attention per label over the report's token states: (B, L, H) -> 14 logits.

    A pooled embedding (``TextHead``) squeezes the whole report into one vector that every label
    must share, and a mean over 100 tokens dilutes the three that say "no pleural effusion". Here
    each label scores every token (``query``: one vector per label), takes the softmax-weighted
    sum of the token states, and reads its logit from that: label-wise attention, the classic
    design for labelling clinical text (CAML, Mullenbach et al. 2018). ``attention`` returns the
    weights (B, 14, L), which show where each label looked.
    """

    reads_tokens = True  # TextClassifier passes it the token states, not a pooled vector

    def __init__(self, hidden_size: int, dropout: float = 0.1, num_labels: int = NUM_LABELS):
        super().__init__()
        self.query = nn.Linear(hidden_size, num_labels, bias=False)  # (14, H): each label's score for a token
        self.weight = nn.Parameter(torch.empty(num_labels, hidden_size))  # each label's read-out of its summary
        self.bias = nn.Parameter(torch.empty(num_labels))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh random weights (the model-randomisation test calls this too)."""
        scale = self.weight.shape[1] ** -0.5
        nn.init.normal_(self.query.weight, std=scale)
        nn.init.normal_(self.weight, std=scale)
        nn.init.zeros_(self.bias)

    def attention(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each label's weights over the tokens (B, 14, L), zero on padding, summing to 1."""
        scores = self.query(hidden).transpose(1, 2)  # (B, 14, L)
        return scores.masked_fill(~attention_mask.bool()[:, None, :], float("-inf")).softmax(-1)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        summary = self.attention(hidden, attention_mask) @ self.dropout(hidden)  # (B, 14, H): one per label
        return (summary * self.weight).sum(-1) + self.bias  # (B, 14) logits


class TextClassifier(nn.Module):
    """Encoder + head end to end: for fine-tuning (an option) and for SHAP on raw text.

    The head is a ``TextHead`` on the pooled embedding, or a ``LabelAttentionHead`` on the token states.
    """

    input_keys = ("input_ids", "attention_mask")

    def __init__(self, encoder: nn.Module, head: TextHead | LabelAttentionHead, tokenizer=None, pooling: str = DEFAULT_POOLING,
                 max_length: int = 256, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer  # not a module: used by predict_texts only
        self.pooling = pooling
        self.max_length = max_length
        self.encoder_frozen = freeze_encoder
        for parameter in encoder.parameters():
            parameter.requires_grad = not freeze_encoder

    def train(self, mode: bool = True) -> TextClassifier:
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (no dropout): used "as is"."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states (B, L, H)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled text embedding (B, H)."""
        return pool_hidden(self.token_states(input_ids, attention_mask), attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if getattr(self.head, "reads_tokens", False):
            return self.head(self.token_states(input_ids, attention_mask), attention_mask)  # (B, 14) logits
        return self.head(self.encode(input_ids, attention_mask))  # (B, 14) logits

    def predict_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, 14) for raw texts (needs the tokenizer given at construction)."""
        if self.tokenizer is None:
            raise ValueError("TextClassifier.predict_texts needs the tokenizer: pass tokenizer= when building it")
        return _token_probabilities(self, self.tokenizer, texts, batch_size, self.max_length)


def _token_probabilities(model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int, max_length: int) -> np.ndarray:
    device = next(model.parameters()).device
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), NUM_LABELS), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
            out[start : start + len(logits)] = torch.sigmoid(logits).float().cpu().numpy()
    model.train(was_training)
    return out


def text_probabilities(model_or_head: nn.Module, encoder: nn.Module | None, tokenizer, texts: Sequence[str],
                       settings: Settings) -> np.ndarray:
    """Probabilities (N, 14) for raw texts: the function SHAP explains.

    A ``TextHead`` (input_keys ("text_features",)) gets the frozen ``encoder``'s pooled embeddings;
    a ``TextClassifier`` (input_keys ("input_ids", "attention_mask")) takes tokens directly.
    """
    texts = [str(t) for t in (texts.tolist() if isinstance(texts, np.ndarray) else texts)]
    keys = tuple(getattr(model_or_head, "input_keys", ()))
    if keys == TextClassifier.input_keys:
        return _token_probabilities(model_or_head, tokenizer, texts, settings.batch_size, settings.max_text_length)
    if keys != TextHead.input_keys:
        raise TypeError(f"text_probabilities needs a TextHead or TextClassifier, got input_keys {keys}")
    if encoder is None:
        raise ValueError("text_probabilities with a TextHead needs the frozen encoder that made its features")
    device = next(model_or_head.parameters()).device
    features = compute_embeddings(texts, tokenizer, encoder, batch_size=settings.batch_size,
                                  max_length=settings.max_text_length, device=device, progress=False,
                                  pooling=text_pooling(settings))
    was_training = model_or_head.training
    model_or_head.eval()
    with torch.no_grad():
        probabilities = torch.sigmoid(model_or_head(text_features=torch.from_numpy(features).to(device)))
    model_or_head.train(was_training)
    return probabilities.float().cpu().numpy()


@dataclasses.dataclass
class TfidfBaseline:
    """TF-IDF features + one logistic regression per label (a constant prevalence where train has one class)."""

    vectorizer: object
    classifiers: list  # one LogisticRegression per label, or None
    prevalence: np.ndarray  # (14,) training prevalence under the uncertainty policy

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits (N, 14) for raw texts."""
        features = self.vectorizer.transform([str(t) for t in texts])
        out = np.zeros((features.shape[0], len(self.classifiers)), dtype=np.float32)
        for j, classifier in enumerate(self.classifiers):
            if classifier is None:
                p = float(np.clip(self.prevalence[j], 1e-4, 1 - 1e-4))
                out[:, j] = np.log(p / (1 - p))
            else:
                out[:, j] = classifier.decision_function(features)
        return out

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities (N, 14) for raw texts."""
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))

    def top_words(self, label: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words (or word pairs) with the largest coefficients for ``label``."""
        classifier = self.classifiers[label_index(label)]
        if classifier is None:
            return []
        vocabulary = self.vectorizer.get_feature_names_out()
        coefficients = classifier.coef_[0]
        top = np.argsort(-coefficients, kind="stable")[:k]
        return [(str(vocabulary[i]), float(coefficients[i])) for i in top]


def fit_tfidf(train_texts: Sequence[str], train_targets: np.ndarray, policy: str = "zeros", seed: int = 0,
              C: float = 4.0, blank_policy: str = "ignore") -> TfidfBaseline:
    """Fit TF-IDF (words and word pairs) + one-vs-rest logistic regression on coded targets (N, 14).

    ``policy`` (uncertain labels) and ``blank_policy`` (not mentioned ones) as in ``labels.binary_targets``.
    """
    texts = [str(t) for t in train_texts]
    targets = np.asarray(train_targets)
    if targets.shape != (len(texts), NUM_LABELS):
        raise ValueError(f"train_targets must have shape ({len(texts)}, {NUM_LABELS}), got {targets.shape}")
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(texts) >= 100 else 1, sublinear_tf=True)
    features = vectorizer.fit_transform(texts)
    binary, mask = binary_targets(targets, policy, blank_policy)
    classifiers, prevalence = [], np.full(NUM_LABELS, 0.5)
    for j in range(NUM_LABELS):
        y = binary[mask[:, j], j]
        prevalence[j] = y.mean() if len(y) else 0.5
        if len(np.unique(y)) < 2:  # one class (or no labelled row) in train: predict the prevalence
            classifiers.append(None)
            continue
        classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed)
        classifiers.append(classifier.fit(features[mask[:, j]], y))
    return TfidfBaseline(vectorizer, classifiers, prevalence)


def tfidf_baseline(train_texts: Sequence[str], train_targets: np.ndarray, eval_texts: Sequence[str],
                   policy: str = "zeros") -> np.ndarray:
    """Logits (M, 14) for ``eval_texts`` from a TF-IDF + logistic regression model fit on the training texts."""
    return fit_tfidf(train_texts, train_targets, policy).logits(eval_texts)
