"""The phantom's offline text encoder: a tiny BERT built here, a stand-in for CXR-BERT.

CXR-BERT cannot be downloaded offline, so the phantom profile builds its own encoder from the
cohort's TRAINING reports (nothing from validation or test leaks into it): a lower-case WordPiece
vocabulary (``wordpiece_vocabulary``), then a 2-layer BERT pretrained by masked language
modelling (``pretrain_mlm``), both saved with ``save_pretrained`` so the workbook loads them with
the same ``from_pretrained`` call that loads CXR-BERT.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import normalizers, pre_tokenizers
from tqdm.auto import tqdm
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

from cxr_helpers.artifacts import write_json
from cxr_helpers.config import Settings
from cxr_helpers.prepare import load_cohort
from cxr_helpers.reports import text_column
from cxr_helpers.text.encoder import quiet_transformers

TINY_BERT = "tiny-bert"  # settings.text_model in the phantom profile: built into <artifacts>/text/tiny-bert
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Masked-LM steps for the tiny BERT: its loss plateaus near the unigram entropy for ~400 steps and
# then learns to use context (6.8 -> ~1.6 by 800 steps on 700 phantom reports, ~45 s of one CPU core).
MLM_STEPS, MLM_STEPS_FAST = 800, 100


def text_dir(settings: Settings) -> Path:
    """Folder for the text artifacts: tiny BERT, embeddings."""
    return Path(settings.artifacts_dir) / "text"


def tiny_bert_dir(settings: Settings) -> Path:
    """Where the phantom's offline tiny BERT lives."""
    return text_dir(settings) / TINY_BERT


def training_reports(cohort) -> list[str]:
    """One text per training study (indication + findings + impression, cleaned): tiny BERT's corpus."""
    train = cohort[cohort["split"] == "train"].drop_duplicates("study_id")
    parts = [train[text_column(s)].fillna("").astype(str) for s in ("indication", "findings_impression")]
    texts = [" ".join(p for p in pair if p).strip() for pair in zip(*parts, strict=True)]
    return [t for t in texts if t]


def ensure_tiny_bert(settings: Settings, progress: bool = True) -> Path:
    """Build the tiny BERT into ``<artifacts>/text/tiny-bert`` from the cohort's training reports if missing."""
    out_dir = tiny_bert_dir(settings)
    if (out_dir / "config.json").exists():
        return out_dir

    cohort = load_cohort(settings.artifacts_dir)
    reports = training_reports(cohort)
    if not reports:
        raise ValueError(f"the cohort in {settings.artifacts_dir} has no training reports to build the tiny BERT from")
    steps = MLM_STEPS_FAST if settings.fast else MLM_STEPS
    if progress:
        print(f"Building the offline tiny BERT from {len(reports)} training reports into {out_dir} ...")
    return build_tiny_bert(reports, out_dir, seed=settings.seed, mlm_steps=steps, progress=progress)


def wordpiece_vocabulary(reports: Sequence[str], vocab_size: int = 3000, min_frequency: int = 2) -> list[str]:
    """A lower-case WordPiece vocabulary for ``reports``, the same on every run: tokens in id order.

    BERT's normaliser and pre-tokeniser (``tokenizers``) split the reports into words. The
    vocabulary holds the special tokens, every character seen (alone and as a "##" continuation,
    so any word can be spelled) and then the words seen at least ``min_frequency`` times, most
    frequent first, up to ``vocab_size``. A word outside it is split greedily into the longest
    known pieces, as WordPiece does. (``tokenizers``' WordPieceTrainer would also learn sub-word
    merges, but it breaks ties between equally frequent merges in an order that changes from one
    process to the next, and every number downstream would change with it.)
    """


    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for report in reports
                     for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(str(report))))
    characters = sorted({character for word in counts for character in word})
    tokens = [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]
    known = set(tokens)
    frequent = sorted((w for w, n in counts.items() if n >= min_frequency and w not in known), key=lambda w: (-counts[w], w))
    return tokens + frequent[: max(0, vocab_size - len(tokens))]


def wrap_tokenizer(vocabulary: Sequence[str], model_max_length: int = 512):
    """A transformers ``BertTokenizerFast`` ([CLS] ... [SEP], lower case) over a WordPiece vocabulary."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
        return BertTokenizerFast.from_pretrained(folder, do_lower_case=True, model_max_length=model_max_length)


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15% of tokens are targets; of those 80% -> [MASK], 10% random, 10% kept."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special  # (B, L)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    inputs = input_ids.clone()
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs[chosen & (draw < 0.8)] = mask_id
    random_slots = chosen & (draw >= 0.8) & (draw < 0.9)
    inputs[random_slots] = torch.randint(len(SPECIAL_TOKENS), vocab_size, input_ids.shape, generator=generator)[random_slots]
    return inputs, labels


def random_window(ids: list[int], length: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """A random stretch of at most ``length`` tokens of ``ids`` ([CLS] ... [SEP]) and its position ids.

    The stretch is re-wrapped in [CLS]/[SEP] and keeps its positions in the whole report, so short
    training windows still train every position embedding a full report uses later.
    """
    if len(ids) <= length:
        return ids, list(range(len(ids)))
    inner = ids[1:-1]
    start = int(torch.randint(len(inner) - (length - 2) + 1, (1,), generator=generator))
    window = [ids[0], *inner[start : start + length - 2], ids[-1]]
    return window, [0, *range(start + 1, start + length)]


def pretrain_mlm(
    mlm_model, tokenizer, reports: Sequence[str], steps: int = 800, batch_size: int = 32, window: int = 32,
    lr: float = 2e-3, mask_probability: float = 0.15, seed: int = 0, progress: bool = True,
) -> list[float]:
    """Masked-language-model pretraining of ``mlm_model`` (BertForMaskedLM) on ``reports``; returns losses.

    Each step reads a random ``window`` of tokens from ``batch_size`` random reports (short windows
    keep a CPU step cheap, and over many steps every part of a report is seen).
    """
    encoded = tokenizer(list(reports))["input_ids"]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(mlm_model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    special_ids = torch.tensor(tokenizer.all_special_ids)
    mlm_model.train()
    losses = []
    for _ in tqdm(range(steps), desc="tiny BERT MLM pretraining", disable=not progress):
        rows = torch.randint(len(encoded), (batch_size,), generator=generator).tolist()
        windows, positions = zip(*(random_window(encoded[r], window, generator) for r in rows), strict=True)
        batch = tokenizer.pad({"input_ids": list(windows)}, return_tensors="pt")  # (B, <= window)
        position_ids = torch.zeros_like(batch["input_ids"])
        for row, row_positions in enumerate(positions):
            position_ids[row, : len(row_positions)] = torch.tensor(row_positions)
        special = torch.isin(batch["input_ids"], special_ids)
        inputs, labels = mask_tokens(batch["input_ids"], special, tokenizer.mask_token_id, len(tokenizer), generator,
                                     mask_probability)
        loss = mlm_model(input_ids=inputs, attention_mask=batch["attention_mask"], position_ids=position_ids,
                         labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm_model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    mlm_model.eval()
    return losses


def build_tiny_bert(
    reports: Sequence[str], out_dir: Path, vocab_size: int = 3000, hidden_size: int = 128, num_layers: int = 2,
    num_heads: int = 2, seed: int = 0, mlm_steps: int = 800, window: int = 32, lr: float = 2e-3,
    mask_probability: float = 0.15, pretrain_dropout: float = 0.0, progress: bool = True,
) -> Path:
    """Train a WordPiece tokenizer and an MLM-pretrained tiny BERT on ``reports``; ``save_pretrained`` both.

    A stand-in for CXR-BERT (itself pretrained on MIMIC reports) that needs no download. Pass the
    TRAINING reports only, so nothing from validation or test leaks into the encoder.
    """
    quiet_transformers()
    reports = [r for r in dict.fromkeys(str(r).strip() for r in reports) if r]
    if not reports:
        raise ValueError("build_tiny_bert needs at least one non-empty report")
    tokenizer = wrap_tokenizer(wordpiece_vocabulary(reports, vocab_size))
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    # No dropout while pretraining: a few hundred steps on a small corpus underfit rather than overfit.
    mlm_model = BertForMaskedLM(BertConfig(
        **{**config.to_dict(), "hidden_dropout_prob": pretrain_dropout, "attention_probs_dropout_prob": pretrain_dropout}))
    losses = pretrain_mlm(mlm_model, tokenizer, reports, steps=mlm_steps, window=window, lr=lr,
                          mask_probability=mask_probability, seed=seed, progress=progress)
    encoder = BertModel(config)  # the encoder the workbook loads; its pooler is unused ([CLS] is read directly)
    encoder.load_state_dict(mlm_model.bert.state_dict(), strict=False)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save_pretrained(staging)
    encoder.save_pretrained(staging)
    record = {"reports": len(reports), "vocab_size": len(tokenizer), "mlm_steps": mlm_steps, "seed": seed,
              "mlm_loss_first": losses[0] if losses else None, "mlm_loss_last": float(np.mean(losses[-20:])) if losses else None}
    write_json(staging / "pretraining.json", record)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)  # the folder appears complete or not at all
    return out_dir
