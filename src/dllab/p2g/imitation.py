"""Imitation learning for the transducer speller (`--rollin P`): a dynamic oracle, and the loss of rolling in
with the model's own actions, after Makarov & Clematide (2018), the training of SIGMORPHON 2021 Task 1's
baseline.

Teacher forcing shows the transducer only the static oracle's states: the gold prefix, the pointer where the
alignment puts it. At test time one wrong action leads it into states it never saw. Here each training word is
spelt step by step: at every step the expert names the actions that are still optimal from the state reached,
the loss is -log of the probability the model gives them together, and the next action is, with probability
P, one the model samples (otherwise the expert's action the model likes best). So the model learns to recover
from its own mistakes.

    Expert(aligner, src_vocab, tgt_vocab, right_to_left)
    expert.word(src_ids, tgt_ids) -> WordExpert     a word's cost-to-go table (cached)
    word.optimal(i, k, dist) -> action ids          the optimal actions at pointer i, k symbols written at i,
                                                    dist the written prefix's edit distances to the gold's
    RollIn(expert, rollin, total, done)             the engine's loss function, its roll-in share growing
    imitation_loss(model, batch, expert, rollin)    one batch's loss at a given roll-in share

The expert is the one an edit-distance loss asks for. Of the gold's prefixes, those closest (in edit distance)
to what was written are the ones to continue. For each, the remaining source is aligned to the remaining gold
by the EM alignment's chunk costs (-log p(chunk | source symbol)): STEP, or writing the next gold symbol,
whichever starts the cheapest alignment. On the gold path this is the static oracle's Viterbi alignment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dllab.p2g.align import STEP, ChunkAligner
from dllab.seq2seq.vocab import EOS, PAD, SOS, Vocab

_INF = math.inf


class WordExpert:
    """One training word: source ids x (in the order the transducer reads them), gold target ids y."""

    def __init__(self, x: tuple[int, ...], y: tuple[int, ...], cost, max_chunk: int, step_id: int):
        self.x, self.y, self.cost, self.K, self.step_id = x, y, cost, max_chunk, step_id
        n, m = len(x), len(y)
        # togo[a][b]: the cheapest alignment of x[a:] to y[b:] (each source symbol writes 0 to K symbols)
        togo = [[_INF] * (m + 1) for _ in range(n + 1)]
        togo[n][m] = 0.0
        for a in range(n - 1, -1, -1):
            for b in range(m + 1):
                togo[a][b] = min(cost(x[a], y[b : b + r]) + togo[a + 1][b + r] for r in range(min(self.K, m - b) + 1))
        self.togo = togo
        self._seen: dict[tuple, list[int]] = {}

    def start(self) -> list[int]:
        """The empty prefix's edit distances to the gold's prefixes y[:j], j = 0 ... m."""
        return list(range(len(self.y) + 1))

    def extend(self, dist: list[int], symbol: int) -> list[int]:
        """The edit distances once `symbol` is written (one row of the Levenshtein table)."""
        new = [dist[0] + 1]
        for j, g in enumerate(self.y, 1):
            new.append(min(dist[j] + 1, new[j - 1] + 1, dist[j - 1] + (g != symbol)))
        return new

    def optimal(self, i: int, k: int, dist: list[int]) -> list[int]:
        """The expert's actions at pointer i with k symbols written at x[i]: EOS past the end; else STEP and /
        or the next gold symbol of the closest gold prefixes, whichever starts the cheapest alignment."""
        key = (i, k, tuple(dist))
        if key not in self._seen:  # the gold path's states come back every epoch
            self._seen[key] = self._optimal(i, k, dist)
        return self._seen[key]

    def _optimal(self, i: int, k: int, dist: list[int]) -> list[int]:
        if i >= len(self.x):
            return [EOS]
        m, closest = len(self.y), min(dist)
        costs: dict[int, float] = {}
        for j, d in enumerate(dist):
            if d != closest:
                continue
            lo = max(j - k, 0)  # what x[i] wrote so far, taken as the gold's y[j-k:j]
            step = self.cost(self.x[i], self.y[lo:j]) + self.togo[i + 1][j]
            costs[self.step_id] = min(costs.get(self.step_id, _INF), step)
            if j < m:
                write = min((self.cost(self.x[i], self.y[lo : j + r]) + self.togo[i + 1][j + r]
                             for r in range(1, min(self.K - k, m - j) + 1)), default=_INF)  # fmt: skip
                costs[self.y[j]] = min(costs.get(self.y[j], _INF), write)
        best = min(costs.values())
        if best == _INF:  # no alignment finishes from here: write the gold's next symbol, or move on
            j = dist.index(closest)
            return [self.y[j]] if j < m else [self.step_id]
        return [a for a, c in costs.items() if c <= best + 1e-9]


class Expert:
    """The dynamic oracle of one training set, over the transducer's action ids."""

    def __init__(self, aligner: ChunkAligner, src_vocab: Vocab, tgt_vocab: Vocab, right_to_left: bool = False):
        self.right_to_left, self.K = right_to_left, aligner.max_chunk
        self.step_id = tgt_vocab.index[STEP]
        src_of = {i: s for s, i in src_vocab.index.items()}
        tgt_of = {i: s for s, i in tgt_vocab.index.items()}
        self._cost: dict = {}

        def cost(x: int, chunk: Sequence[int]) -> float:
            key = (x, tuple(chunk))
            if key not in self._cost:
                symbols = tuple(tgt_of[c] for c in chunk)
                self._cost[key] = -math.log(aligner.p(src_of[x], symbols)) if len(chunk) <= self.K else _INF
            return self._cost[key]

        self.cost = cost
        self._words: dict[tuple, WordExpert] = {}

    def word(self, src_ids: Sequence[int], tgt_ids: Sequence[int]) -> WordExpert:
        """src_ids in the data's order (a right-to-left run's transducer reads them reversed), tgt_ids the gold
        target's symbols (no SOS, EOS or STEP)."""
        key = (tuple(src_ids), tuple(tgt_ids))
        if key not in self._words:
            x = key[0][::-1] if self.right_to_left else key[0]
            self._words[key] = WordExpert(x, key[1], self.cost, self.K, self.step_id)
        return self._words[key]


class RollIn:
    """The engine's loss function for imitation learning: `rollin(model, batch)` -> loss.

    Each batch is spelt step by step without gradients: at every step the expert names the optimal actions
    from the state reached, and the next action is, with probability p, one sampled from the model (otherwise
    the optimal action the model likes best). p grows linearly from 0 to `rollin` over the `total` training
    steps (counted from `done`, those of the epochs a resumed run has behind it), so the model first learns the
    expert's own path. The loss, over the actions taken, is -log p(optimal actions), averaged, from one teacher-
    forced pass (the transducer's `forward` takes any action sequence), as fast to back-propagate as the
    static oracle's."""

    def __init__(self, expert: Expert, rollin: float, total: int, done: int = 0):
        self.expert, self.rollin, self.total, self.done = expert, rollin, max(total, 1), done

    def __call__(self, model, batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        p = self.rollin * min(self.done / self.total, 1.0)
        self.done += 1
        return imitation_loss(model, batch, self.expert, p)


def imitation_loss(model, batch: tuple[Tensor, Tensor, Tensor, Tensor], expert: Expert, rollin: float) -> Tensor:
    """One batch rolled in with the model's sampled actions with probability `rollin` per word and step (see
    `RollIn`): the mean over the actions taken of -log p(the expert's optimal actions there)."""
    src, src_len, tgt, _ = batch  # tgt: SOS, the static oracle's actions, EOS, PAD
    inner = getattr(model, "module", model)  # under DDP: start / step on the model, the loss through the wrapper
    special = {PAD, SOS, EOS, expert.step_id}
    words = [expert.word(src[b, : int(src_len[b])].tolist(), [a for a in tgt[b].tolist() if a not in special])
             for b in range(len(src))]  # fmt: skip
    B = len(words)
    ptr, written = [0] * B, [0] * B  # the pointer, and the symbols written at it
    dist = [w.start() for w in words]
    taken: list[list[int]] = [[] for _ in range(B)]  # the actions each word took, EOS last
    optimal: list[list[list[int]]] = [[] for _ in range(B)]  # the expert's actions before each of them
    active = list(range(B))
    limit = int(src_len.max()) * (expert.K + 1) + tgt.shape[1] + 2  # a model that never steps stops here
    training = inner.training
    inner.eval()  # the roll-in follows the model as it spells at test time, without dropout
    with torch.no_grad():
        state = inner.start((src, src_len))
        prev = torch.full((B,), SOS, dtype=torch.long, device=src.device)
        for _ in range(limit):
            logp, state = inner.step(prev, state)
            rows, cols = [], []
            for b in active:
                opt = words[b].optimal(ptr[b], written[b], dist[b])
                optimal[b].append(opt)
                rows += [b] * len(opt)
                cols += opt
            good = torch.zeros_like(logp, dtype=torch.bool)
            good[rows, cols] = True
            idx = torch.tensor(active, device=src.device)
            from_model = (torch.rand(len(active)) < rollin).tolist() if rollin else [False] * len(active)
            sampled = torch.multinomial(logp[idx].exp(), 1)[:, 0].tolist() if any(from_model) else []
            liked = logp[idx].masked_fill(~good[idx], -_INF).argmax(-1).tolist()
            prev = prev.clone()
            still = []
            for n, b in enumerate(active):
                a = sampled[n] if from_model[n] else liked[n]
                prev[b] = a
                taken[b].append(a)
                if a == EOS:
                    continue
                if a == expert.step_id:
                    ptr[b], written[b] = ptr[b] + 1, 0
                else:
                    written[b] += 1
                    dist[b] = words[b].extend(dist[b], a)
                still.append(b)
            active = still
            if not active:
                break
    inner.train(training)
    T = max(len(t) for t in taken)
    tgt_in = torch.tensor([[SOS, *t[:-1]] + [PAD] * (T - len(t)) for t in taken])
    at = [(b, t, a) for b in range(B) for t, opt in enumerate(optimal[b]) for a in opt]
    good = torch.zeros(B, T, logp.shape[-1], dtype=torch.bool)
    good[tuple(torch.tensor(at).T)] = True
    logp = torch.log_softmax(model(src, src_len, tgt_in.to(src.device)).float(), -1)
    mask = good.to(src.device)
    per_step = torch.logsumexp(logp.masked_fill(~mask, -_INF), -1)  # (B, T); -inf where no action was taken
    valid = mask.any(-1)
    return -per_step[valid].mean()
