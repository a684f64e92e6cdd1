"""The prior's transformer: an exact, causal factorisation over the K codebooks' tokens."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dcvq.prior.model import TokenPrior, grids_to_sequence, sequence_to_grids


def small(**kw) -> TokenPrior:
    torch.manual_seed(0)
    return TokenPrior([2, 3], [1, 2], **({"layers": 2, "width": 16, "heads": 2} | kw)).eval()


def test_sequence_order_is_raster_with_the_codebooks_of_a_position_together():
    # grid[b, k, i, j] = 100 k + 10 i + j: global (k=0) then local (k=1) at each position
    k, i, j = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(3), indexing="ij")
    grids = (100 * k + 10 * i + j)[None]
    seq = grids_to_sequence(grids)
    assert seq[0].tolist() == [0, 100, 1, 101, 2, 102, 10, 110, 11, 111, 12, 112]
    assert torch.equal(sequence_to_grids(seq, 2, 2, 3), grids)


def test_probabilities_of_every_sequence_sum_to_one():
    """The likelihood is exact: summed over all 2*3*2*3 token sequences, it is 1."""
    model = small()
    seq = torch.tensor(list(itertools.product(range(2), range(3), range(2), range(3))))
    with torch.no_grad():
        log_p = -model(seq).double().sum((1, 2))
    assert math.isclose(log_p.exp().sum().item(), 1.0, rel_tol=1e-5)


def test_each_token_sees_only_the_tokens_before_it():
    model = small()
    seq = torch.tensor([[0, 1, 1, 2]])
    with torch.no_grad():
        before = model(seq)
        for t in range(4):
            changed = seq.clone()
            changed[0, t] = (changed[0, t] + 1) % model.codebook_sizes[t % 2]
            after = model(changed)
            nll_before, nll_after = before.flatten(1), after.flatten(1)  # slot order
            # slots < t predict the same; slot t is scored on another token; later slots
            # condition on it
            assert torch.equal(nll_before[:, :t], nll_after[:, :t]), t
            assert not torch.equal(nll_before[:, t:], nll_after[:, t:]), t
            logits_b, logits_a = model.logits(seq), model.logits(changed)
            for s in range(t + 1):  # the prediction of slot s <= t does not use token t
                p, k = divmod(s, 2)
                assert torch.equal(logits_b[k][:, p], logits_a[k][:, p]), (t, s)


def reference_sample(model: TokenPrior, n: int, generator: torch.Generator) -> torch.Tensor:
    """Sampling without the key/value cache: the full forward over the prefix each step
    (later slots hold zeros, which the causal mask hides)."""
    seq = torch.zeros(n, model.seq_len, dtype=torch.long)
    for t in range(model.seq_len):
        p, k = divmod(t, model.codebooks)
        probs = model.logits(seq)[k][:, p].float().softmax(1)
        seq[:, t] = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return sequence_to_grids(seq, model.codebooks, *model.grid)


def test_cached_sampling_draws_from_the_models_distribution():
    torch.manual_seed(0)
    model = TokenPrior([5, 7], [2, 3], layers=2, width=16, heads=2).eval()
    with torch.no_grad():
        cached = model.sample(6, torch.Generator().manual_seed(3))
        full = reference_sample(model, 6, torch.Generator().manual_seed(3))
    assert cached.shape == (6, 2, 2, 3)
    assert torch.equal(cached, full)


def test_top_k_keeps_the_most_likely_codes():
    model = small()
    with torch.no_grad():
        grids = model.sample(50, torch.Generator().manual_seed(0), top_k=1)
    assert (grids == grids[:1]).all()  # greedy: one sequence


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"seq_len": 5}, "prior.model.seq_len=5"),
        ({"vocab_sizes": [2, 4]}, "prior.model.vocab_sizes=[2, 4]"),
        ({"heads": 3}, "prior.model.heads=3"),
    ],
)
def test_a_prior_that_does_not_fit_names_its_key(kw, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        TokenPrior([2, 3], [1, 2], width=16, **({"heads": 2} | kw))


def test_fixed_sizes_that_fit_are_accepted():
    assert TokenPrior([2, 3], [1, 2], width=16, heads=2, seq_len=4, vocab_sizes=[2, 3]).seq_len == 4
