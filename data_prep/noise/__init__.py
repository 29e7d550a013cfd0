"""BART denoising noise on token-id arrays: sentence permutation, span masking / text infilling, insertion.

``Denoiser(cfg, special, seed)(input_ids, sentence_ends, doc_ends, epoch=e, index=i)`` returns
``(src, tgt)``: the corrupted encoder input and the original example, both int64. The corruption is a
pure function of ``(seed, epoch, index)`` (a NumPy generator seeded with ``SeedSequence([seed, epoch,
index])``), so it is the same on any number of loader workers or ranks and after a resume, and new
every epoch. ``Denoiser.batch(rows, epoch, indices)`` noises many rows at once (the trainer's loader gives
it a micro-batch), each exactly as a call for that row alone, several times faster.

Semantics, in the order they are applied (``NoiseConfig`` holds every knob):

1. Sentence permutation (``permute_sentences`` = p): in every document, ``ceil(p * n)`` of its ``n``
   sentences, chosen at random, are shuffled among their own slots (fairseq's rule); p = 1 shuffles all.
   Sentences never leave their document; ``[CLS]`` and each document's closing ``[SEP]`` stay put.
2. Rotation (``rotate`` = p): with probability p a document's tokens are rotated to start at a random
   token (per document, so document boundaries never move; fairseq rotates the whole example).
3. Span selection. Maskable *units* are the tokens that are not ``[CLS] [SEP] [PAD] [MASK]`` (nor a
   document end), or with ``whole_word`` the words: a unit is a token plus the tokens that continue its
   word (the row's ``word_continues`` when the shards were segmented, ``prepare --segment``; else the
   ``##`` pieces after it), so a word is never split. The budget is ``max(1, round(mask_ratio * units))``
   units (0 when ``mask_ratio`` is 0 or nothing is maskable). Spans never cross a document boundary.
   Span lengths (in units) follow ``span_distribution``: geometric P(k) ~ p(1-p)^(k-1), k >= 1, or
   Poisson(lambda), k >= 0, both truncated and renormalised at ``span_max_length`` (0: no cap).

   - ``span_layout = "tiled"`` (UER-py): every document is cut into back-to-back spans (a length-0
     draw counts as 1; the last span of a document is cut at its end). Spans are taken in random order
     while they fit the budget (a span that does not fit is skipped), so exactly the budget is chosen
     unless no remaining span fits. Unlike UER-py, no span ever covers the closing ``[SEP]``.
   - ``span_layout = "scattered"`` (fairseq): lengths are drawn until they sum to the budget, the last
     one cut to hit it exactly; zero-length spans become insertions of one ``[MASK]`` each. With
     ``span_overlap`` (the ``bart`` preset: fairseq's own rule) each span starts at a distinct random
     unit, is cut at the row's end, and spans that overlap (not those that only touch) merge into one
     span, drawn as one: so the spans cover less than the budget (about 26.7% for 30%, see
     ``docs/noise_fidelity.md``). Without it the spans are placed uniformly at random without overlap
     and cover exactly the budget. A span that would run across a document boundary is split there into
     two pieces with the same outcome.

   "Masked fraction" therefore means: units inside chosen spans / maskable units, counted before any
   replacement or collapsing (chosen spans left unchanged by ``keep_ratio`` count as chosen); with
   ``span_overlap``, units covered by several spans count once.
4. Per chosen span: with probability ``random_ratio`` random tokens, with ``keep_ratio`` unchanged,
   else ``[MASK]``. Random tokens are drawn uniformly from the vocab without special tokens
   (``[PAD] [UNK] [CLS] [SEP] [MASK]``, and with a tokenizer every ``[...]`` token such as ``[unused1]``).
   ``replace_length``: -1 replaces every token of the span (one random token per position); 1 replaces
   the span by one token (``[MASK]`` or one random token); 0 deletes a masked span (a random one still
   leaves one random token).
5. ``collapse_masks``: every run of consecutive ``[MASK]`` that the noise made becomes one ``[MASK]``
   (UER-py's text infilling; adjacent masked spans merge). A ``[MASK]`` already in the input is kept:
   a run that holds one keeps exactly the input's ``[MASK]`` tokens (the masked spans merge into them).
6. Insertion: ``round(insert_ratio * maskable tokens)`` plus the zero-length spans, each a ``[MASK]`` or
   a random token, at random places between ``[CLS]`` and the last token. The count is cut so that
   ``len(src) <= len(input_ids)`` (the noise never lengthens an example; the zero-length spans' inserts
   are kept first). Which are random (``insert_random``): ``per_token``, each with probability
   ``random_ratio``; ``fairseq`` (the ``bart`` preset), ``ceil(random_ratio * n)`` of the ``n``
   zero-length spans' inserts and ``ceil(random_ratio * m)`` of the ``m`` others, at random (so 1 of 1
   or 2 inserts: the fairseq rule makes small counts mostly random).

Presets: ``uer`` (the defaults: UER-py's ``bart-chinese`` recipe) and ``bart`` (fairseq ``bart.large``);
``docs/noise_fidelity.md`` measures both against UER-py's and fairseq's own code and lists what differs.

Modules: ``config`` (``NoiseConfig``, ``PRESETS``, ``SpecialIds``), ``spans`` (step 3 for one row),
``insertion`` (step 6's rule: how many inserts, which are random), ``pipeline`` (``Denoiser``: all steps
for a batch on flat arrays) and ``reference`` (the same noise one token at a time in pure Python, with its
own random draws: the executable form of this description, which the tests and ``bench/bench_noise.py``
compare the ``Denoiser`` with).
"""

from data_prep.noise.config import PRESETS, NoiseConfig, SpecialIds
from data_prep.noise.pipeline import KEEP, MASK, RANDOM, Denoiser, Trace

__all__ = ["KEEP", "MASK", "PRESETS", "RANDOM", "Denoiser", "NoiseConfig", "SpecialIds", "Trace"]
