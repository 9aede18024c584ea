"""The genetics-informed transformer: windowed attention against a naive full attention, the
chromosome mask, the subset/crop property, input checks; the MLP baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gimtool.model import ModelConfig
from gimtool.model.genetic import (
    GeneticTransformer,
    GeneticWindowAttention,
    MLPGeneticEncoder,
    StageMeta,
    chrom_codes,
    sinusoidal_encoding,
)


def cfg(**kw) -> ModelConfig:
    base = dict(genetic_dims=(8, 8, 16), heads=2, window=4, pool_rate=3, pos_dim=16, pos_proj_dim=4,
                rbf_centres=5, rbf_max_cm=0.5, genetic_out_dim=16, mlp_ratio=2, mlp_hidden=16)
    base.update(kw)
    return ModelConfig(**base)


def random_meta(L: int, chrom: list[int], seed: int = 0, invalid=()) -> StageMeta:
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(chrom)
    bp = torch.sort(torch.randint(0, 2_000_000, (L,), generator=g)).values.double()
    cm = (bp / 1e6 + 0.05 * torch.rand(L, generator=g, dtype=torch.float64)).float()
    valid = torch.ones(L, dtype=torch.bool)
    valid[list(invalid)] = False
    return StageMeta(valid, c, bp, cm)


def naive_attention(att: GeneticWindowAttention, x: torch.Tensor, meta: StageMeta, shift: bool) -> torch.Tensor:
    """Full L x L attention written from eq. 7-9, with the window/chromosome/validity mask."""
    B, L, C = x.shape
    H, hd, w, c = att.heads, att.head_dim, att.window, att.cfg
    q, k, v = att.qkv(x).view(B, L, 3, H, hd).unbind(2)  # (B, L, H, hd)
    pe = sinusoidal_encoding(meta.bp, c.pos_dim, c.pos_min_period_bp, c.pos_max_period_bp)
    left = (pe @ att.pe_left.weight.t()).view(L, H, -1)
    right = (pe @ att.pe_right.weight.t()).view(L, H, -1)
    centres = torch.linspace(0, c.rbf_max_cm, c.rbf_centres)
    sigma = c.rbf_max_cm / (c.rbf_centres - 1)
    win = (torch.arange(L) + (w // 2 if shift else 0)) // w
    out = torch.zeros(B, L, H, hd)
    for h in range(H):
        score = torch.zeros(B, L, L)
        for i in range(L):
            for j in range(L):
                d = float(meta.cm[i] - meta.cm[j])
                r = torch.exp(-(((abs(d) - centres) / sigma) ** 2))
                rbf = float(r @ (att.rbf_pos[h] if d >= 0 else att.rbf_neg[h]))
                pos = float(left[i, h] @ right[j, h])
                ok = (win[i] == win[j] and meta.chrom[i] == meta.chrom[j] and meta.valid[j]) or i == j
                score[:, i, j] = (q[:, i, h] * k[:, j, h]).sum(-1) / math.sqrt(hd) + pos + rbf if ok else -math.inf
        out[:, :, h] = torch.softmax(score, dim=-1) @ v[:, :, h]
    return att.proj(out.reshape(B, L, C))


@pytest.mark.parametrize("shift", [False, True])
def test_window_attention_equals_masked_full_attention(shift):
    torch.manual_seed(0)
    c = cfg()
    att = GeneticWindowAttention(c, 8)
    L = 16  # 4 windows; a chromosome boundary inside a window and an invalid token
    meta = random_meta(L, [1] * 6 + [2] * 10, invalid=[9])
    x = torch.randn(2, L, 8)
    with torch.no_grad():
        fast = att(x, meta, shift)
        slow = naive_attention(att, x, meta, shift)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)


def test_window_attention_never_links_chromosomes():
    torch.manual_seed(1)
    att = GeneticWindowAttention(cfg(), 8)
    L = 16
    meta = random_meta(L, [3] * 7 + [4] * 9)
    x = torch.randn(1, L, 8)
    x2 = x.clone()
    x2[:, 7:] = torch.randn(1, 9, 8)  # other embeddings on chromosome 4
    cm2 = meta.cm.clone()
    cm2[7:] = meta.cm[6] + torch.linspace(0.0, 0.01, 9)  # and cM right next to chromosome 3's end
    meta2 = StageMeta(meta.valid, meta.chrom, meta.bp, cm2)
    with torch.no_grad():
        for shift in (False, True):
            a = att(x, meta, shift)
            b = att(x2, meta2, shift)
            torch.testing.assert_close(a[:, :7], b[:, :7])
            assert not torch.allclose(a[:, 7:], b[:, 7:])
        # the bias itself: every cross-chromosome pair in a window is -inf, no same-chromosome pair is
        bias = att.window_bias(meta)  # windows [0..3], [4..7], ...: window 1 holds 4,5,6 (chr3) and 7 (chr4)
        assert torch.isinf(bias[1, :, :3, 3]).all() and torch.isinf(bias[1, :, 3, :3]).all()
        assert torch.isfinite(bias[1, :, :3, :3]).all()


def _snps(n1: int, n2: int, n3: int = 0):
    chrom = torch.tensor([1] * n1 + [2] * n2 + [5] * n3)
    bp = torch.cat([torch.arange(n) * 4000 + 1000 * k for k, n in enumerate((n1, n2, n3))])
    cm = bp.double() / 1e6 + chrom.double()
    return chrom, bp, cm


def test_subset_equals_masked_full_array():
    torch.manual_seed(2)
    c = cfg()
    enc = GeneticTransformer(c).eval()
    block = enc.block  # window * pool_rate ** 2 = 36
    assert block == 36
    chrom, bp, cm = _snps(100, 80, 50)
    L = len(chrom)
    geno = torch.randint(0, 3, (3, L)).to(torch.int8)
    geno[1, 7] = -127
    with torch.no_grad():
        # whole chromosomes: drop chromosome 2
        keep = chrom != 2
        full = enc(geno, chrom, bp, cm, mask=keep)
        sub = enc(geno[:, keep], chrom[keep], bp[keep], cm[keep])
        torch.testing.assert_close(full, sub, atol=1e-5, rtol=1e-5)
        # a crop starting at a multiple of the block within its chromosome (chr 1 SNPs 36..89)
        crop = torch.zeros(L, dtype=torch.bool)
        crop[36:90] = True
        full = enc(geno, chrom, bp, cm, mask=crop)
        sub = enc(geno[:, crop], chrom[crop], bp[crop], cm[crop])
        torch.testing.assert_close(full, sub, atol=1e-5, rtol=1e-5)
        # masking is not a no-op, and an unaligned crop still runs
        assert not torch.allclose(enc(geno, chrom, bp, cm), full)
        odd = torch.zeros(L, dtype=torch.bool)
        odd[5:77] = True
        assert torch.isfinite(enc(geno[:, odd], chrom[odd], bp[odd], cm[odd])).all()


def test_output_uses_genotypes_positions_and_missing():
    torch.manual_seed(3)
    enc = GeneticTransformer(cfg()).eval()
    chrom, bp, cm = _snps(50, 40)
    geno = torch.randint(0, 3, (2, 90)).to(torch.int8)
    with torch.no_grad():
        y = enc(geno, chrom, bp, cm)
        g2 = geno.clone()
        g2[0, 10] = -127
        y2 = enc(g2, chrom, bp, cm)
        assert torch.allclose(y[1], y2[1], atol=1e-6) and not torch.allclose(y[0], y2[0])
        assert not torch.allclose(enc(geno, chrom, bp * 2, cm), y)
        assert not torch.allclose(enc(geno, chrom, bp, cm * 1.5), y)
        # batch rows are independent (nothing mixes people)
        torch.testing.assert_close(enc(geno[1:], chrom, bp, cm), y[1:], atol=1e-5, rtol=1e-5)


def test_gradients_reach_all_parameters():
    torch.manual_seed(4)
    enc = GeneticTransformer(cfg())
    chrom, bp, cm = _snps(60, 60)
    enc(torch.randint(0, 3, (2, 120)), chrom, bp, cm).square().sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_input_errors():
    enc = GeneticTransformer(cfg())
    chrom, bp, cm = _snps(20, 20)
    geno = torch.zeros(2, 40, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"bp must be \(40,\)"):
        enc(geno, chrom, bp[:-1], cm)
    with pytest.raises(ValueError, match="sorted by chromosome"):
        enc(geno, torch.cat([chrom[20:], chrom[:20], ]).flip(0).roll(5), bp, cm)
    with pytest.raises(ValueError, match="no SNP left"):
        enc(geno, chrom, bp, cm, mask=torch.zeros(40, dtype=torch.bool))
    with pytest.raises(ValueError, match="chromosome codes"):
        enc(geno, chrom + 40, bp, cm)


def test_chrom_codes():
    assert chrom_codes(["1", "22", "X", "chrY", "XY", "MT", 7]).tolist() == [1, 22, 23, 24, 25, 26, 7]
    with pytest.raises(ValueError, match="chromosome 'chrUn' \\(SNP 2\\)"):
        chrom_codes(["1", "chrUn"])


def test_sinusoidal_encoding_resolves_large_positions():
    bp = torch.tensor([248_956_400, 248_956_401], dtype=torch.long)
    e = sinusoidal_encoding(bp, 16, 100.0, 3e8)
    assert e.shape == (2, 16) and e.dtype == torch.float32
    ref = np.concatenate([np.sin(2 * np.pi * 248_956_400 / np.logspace(2, np.log10(3e8), 8)),
                          np.cos(2 * np.pi * 248_956_400 / np.logspace(2, np.log10(3e8), 8))])
    np.testing.assert_allclose(e[0].numpy(), ref, atol=1e-6)
    assert not torch.allclose(e[0], e[1])


def test_mlp_encoder():
    enc = MLPGeneticEncoder(cfg(), 30)
    geno = torch.randint(0, 3, (4, 30)).to(torch.int8)
    geno[0, 0] = -127
    assert enc(geno).shape == (4, 16)
    with pytest.raises(ValueError, match="built for 30 SNPs"):
        enc(geno[:, :20])


def test_chunked_blocks_equal_whole_sequence():
    torch.manual_seed(5)
    chrom, bp, cm = _snps(50, 70, 30)
    geno = torch.randint(0, 3, (2, 150)).to(torch.int8)
    whole = GeneticTransformer(cfg(genetic_chunk_tokens=10**6)).train()
    chunked = GeneticTransformer(cfg(genetic_chunk_tokens=40, checkpoint_genetic=False)).train()
    chunked.load_state_dict(whole.state_dict())
    ya, yb = whole(geno, chrom, bp, cm), chunked(geno, chrom, bp, cm)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, pa), pb in zip(whole.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=n)
    meta = StageMeta(torch.ones(10, dtype=torch.bool), torch.tensor([1] * 3 + [2] * 3 + [3] * 4), torch.zeros(10), torch.zeros(10))
    assert meta.chunks(6) == [(0, 6), (6, 10)] and meta.chunks(2) == [(0, 3), (3, 6), (6, 10)] and meta.chunks(99) == [(0, 10)]
