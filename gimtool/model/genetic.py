"""Genetic encoders: the genetics-informed transformer (paper section 4) and an MLP baseline.

Inputs, for B people and L SNPs sorted by chromosome then position (samples x SNPs):
    geno  (B, L) int8/long, 0/1/2 copies of A1, -127 (any other value) = missing
    chrom (L,)   integer chromosome codes (1..22, X=23, Y=24, XY=25, MT=26; see chrom_codes)
    bp    (L,)   base-pair positions
    cm    (L,)   genetic positions in centimorgans
    mask  (L,)   optional bool, False = treat the SNP as absent
    af    (L,)   optional A1 allele frequencies (of the training people) for the standardized input
Output: (B, genetic_out_dim).

Input standardization. By default every encoder reads the standardized allele count
(g - 2p) / sqrt(2p(1 - p)) (missing calls at 0, the mean), as GCTA and BOLT do, rather than
an embedding of the genotype class. With class embeddings, a randomly initialised transformer
gives almost the same vector to every person (between-person SD / |mean| 0.0115 at 600 SNPs,
and shrinking with more SNPs): the token embeddings are dominated by what all people share, and
the readouts average over all tokens. Standardized counts have mean 0 over people at every SNP,
so what the encoder passes on is person-specific from the first step. `genetic_input =
"classes"` restores the paper's class embedding.

Layout. At every stage each chromosome's run of tokens is padded to a multiple of the window and
(before a pooling) of pool_rate, so no window and no pooling group holds two chromosomes, every
chromosome starts window-aligned, and one chromosome's tokens never depend on another's until the
global readout. The padding is re-inserted after each pooling rather than taken once as
block = window * pool_rate ** (n_stages - 1) SNPs at the input: the result is the same (padding
tokens are invalid at every stage) and the first, largest stage carries fewer tokens.
Padding and masked SNPs are invalid tokens: never attended to, left out of pooling and readout.
Hence the subset property: the output for a subset made of whole chromosomes, or of a crop
starting at a multiple of `block` within its chromosome, equals the output for the full array
with everything else masked (tested): such a crop starts window- and pool-aligned at every stage.
Shifted windows can straddle two chromosomes; the attention mask forbids every pair on different
chromosomes, so the cM term (and all others) never links them. Attention is within windows of `window` tokens: time and memory are linear in L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from gimtool.conventions import chrom_to_int

from .config import ModelConfig

MISSING_CLASS = 3
def _fused_attention(x: torch.Tensor) -> bool:
    """Whether window attention goes through F.scaled_dot_product_attention (fused kernels on
    CUDA) rather than the plain batched products that are faster on the CPU at w = 10."""
    return x.is_cuda


def chrom_codes(values) -> np.ndarray:
    """PLINK chromosome names or numbers -> int64 codes (1..22, X=23, Y=24, XY=25, MT=26).

    Raises ValueError naming the first unknown value.
    """
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        code = chrom_to_int(str(v).strip())
        if code is None or not 1 <= code <= 26:
            raise ValueError(f"chromosome {v!r} (SNP {i + 1}) is not 1-26, X, Y, XY or MT")
        out[i] = code
    return out


def sinusoidal_encoding(bp: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    """(N,) positions in bp -> (N, dim) float32 sin/cos features, wavelengths geometric in [min, max].

    Computed in float64: a float32 bp near 2.5e8 is only exact to 16 bp.
    """
    periods = torch.logspace(math.log10(min_period), math.log10(max_period), dim // 2, dtype=torch.float64, device=bp.device)
    ang = bp.to(torch.float64)[:, None] * (2 * math.pi / periods)[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1).to(torch.float32)


def rbf_expand(s: torch.Tensor, centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """Eq. 9 (with the Gaussian's minus sign): s (...) -> (..., c), exp(-((s - t) / sigma)^2)."""
    return torch.exp(-(((s[..., None] - centres) / sigma) ** 2))


@dataclass
class StageMeta:
    """Per-token metadata of one stage (shared by the whole batch). All (L,)."""

    valid: torch.Tensor  # bool
    chrom: torch.Tensor  # long; padding carries its chromosome's code
    bp: torch.Tensor  # float64
    cm: torch.Tensor  # float32
    pe: torch.Tensor | None = None  # (L, pos_dim) sinusoidal encoding of bp, computed once per stage

    def encoding(self, cfg: ModelConfig) -> torch.Tensor:
        if self.pe is None:
            self.pe = sinusoidal_encoding(self.bp, cfg.pos_dim, cfg.pos_min_period_bp, cfg.pos_max_period_bp)
        return self.pe

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def slice(self, a: int, b: int) -> "StageMeta":
        pe = None if self.pe is None else self.pe[a:b]
        return StageMeta(self.valid[a:b], self.chrom[a:b], self.bp[a:b], self.cm[a:b], pe)

    def chunks(self, max_tokens: int) -> list[tuple[int, int]]:
        """Token ranges [a, b) made of whole chromosome runs, each at most max_tokens long unless
        one chromosome alone is longer."""
        change = (torch.nonzero(self.chrom[1:] != self.chrom[:-1]).flatten() + 1).tolist()
        bounds = [0] + change + [len(self)]
        out, a = [], 0
        for i in range(1, len(bounds)):
            if bounds[i] - a > max_tokens and bounds[i - 1] > a:
                out.append((a, bounds[i - 1]))
                a = bounds[i - 1]
        out.append((a, len(self)))
        return out

    def pad(self, left: int, right: int) -> "StageMeta":
        """Extra invalid tokens on both ends (chromosome 0, which matches no real chromosome)."""

        def p(t: torch.Tensor, value) -> torch.Tensor:
            if t.dtype == torch.bool:
                return F.pad(t.to(torch.uint8), (left, right), value=int(value)).bool()
            return F.pad(t, (left, right), value=value)

        return StageMeta(p(self.valid, False), p(self.chrom, 0), p(self.bp, 0.0), p(self.cm, 0.0))

    def pool(self, rate: int) -> "StageMeta":
        """Metadata of the tokens after pooling groups of `rate`: mean position of the valid members."""
        v = self.valid.view(-1, rate)
        n = v.sum(1)
        w = v.to(torch.float64)
        denom = n.clamp(min=1).to(torch.float64)
        bp = (self.bp.view(-1, rate) * w).sum(1) / denom
        cm = ((self.cm.view(-1, rate).to(torch.float64) * w).sum(1) / denom).to(torch.float32)
        return StageMeta(n > 0, self.chrom.view(-1, rate)[:, 0].clone(), bp, cm)


@dataclass
class SnpLayout:
    index: torch.Tensor  # (Lp,) long: input position of each token, -1 for padding
    meta: StageMeta  # (Lp,) metadata of the first stage


def make_layout(chrom: torch.Tensor, bp: torch.Tensor, cm: torch.Tensor, mask: torch.Tensor | None, block: int) -> SnpLayout:
    """Pad each chromosome's run of SNPs to a multiple of `block` (see module docstring).

    chrom, bp, cm, mask: (L,). Chromosomes must form contiguous runs (the array is sorted).
    index[i] = -1 marks padding.
    """
    L = chrom.shape[0]
    dev = chrom.device
    chrom = chrom.long()
    runs, counts = torch.unique_consecutive(chrom, return_counts=True)
    if runs.unique().numel() != runs.numel():
        raise ValueError("SNPs must be sorted by chromosome (a chromosome appears in two separate runs)")
    padded = (counts + block - 1) // block * block
    in_start = torch.cumsum(counts, 0) - counts
    out_start = torch.cumsum(padded, 0) - padded
    run_of = torch.repeat_interleave(torch.arange(len(runs), device=dev), counts)
    dest = out_start[run_of] + torch.arange(L, device=dev) - in_start[run_of]
    Lp = int(padded.sum())
    index = torch.full((Lp,), -1, dtype=torch.long, device=dev)
    index[dest] = torch.arange(L, device=dev)
    valid = torch.zeros(Lp, dtype=torch.bool, device=dev)
    valid[dest] = True if mask is None else mask.to(device=dev, dtype=torch.bool)
    tok_bp = torch.zeros(Lp, dtype=torch.float64, device=dev)
    tok_bp[dest] = bp.to(device=dev, dtype=torch.float64)
    tok_cm = torch.zeros(Lp, dtype=torch.float32, device=dev)
    tok_cm[dest] = cm.to(device=dev, dtype=torch.float32)
    tok_chrom = torch.repeat_interleave(runs, padded)
    return SnpLayout(index, StageMeta(valid, tok_chrom, tok_bp, tok_cm))


def repad_stage(x: torch.Tensor, meta: StageMeta, unit: int) -> tuple[torch.Tensor, StageMeta]:
    """Re-pad each chromosome run of x (B, L, C) / meta (L,) to a multiple of `unit` tokens;
    padding tokens are invalid zeros. Returns the inputs themselves when no run needs padding."""
    runs, counts = torch.unique_consecutive(meta.chrom, return_counts=True)
    if not bool((counts % unit).any()):
        return x, meta
    lay = make_layout(meta.chrom, meta.bp, meta.cm, meta.valid, unit)
    dest = torch.nonzero(lay.index >= 0).flatten()
    out = x.new_zeros(x.shape[0], len(lay.index), x.shape[2]).index_copy(1, dest, x)
    return out, lay.meta


class GeneticWindowAttention(nn.Module):
    """Multi-head self-attention within windows, score = content + bp term + cM RBF term (eq. 7-8).

    forward(x (B, L, dim), meta (L,), shift) with L a multiple of the window.
    """

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        self.dim, self.heads, self.window = dim, cfg.heads, cfg.window
        self.head_dim = dim // cfg.heads
        self.cfg = cfg
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        p = cfg.pos_proj_dim
        self.pe_left = nn.Linear(cfg.pos_dim, cfg.heads * p, bias=False)
        self.pe_right = nn.Linear(cfg.pos_dim, cfg.heads * p, bias=False)
        nn.init.normal_(self.pe_left.weight, std=(cfg.pos_dim * p) ** -0.25 / 2)
        nn.init.normal_(self.pe_right.weight, std=(cfg.pos_dim * p) ** -0.25 / 2)
        self.rbf_pos = nn.Parameter(torch.randn(cfg.heads, cfg.rbf_centres) * 0.1)
        self.rbf_neg = nn.Parameter(torch.randn(cfg.heads, cfg.rbf_centres) * 0.1)
        self.register_buffer("rbf_centres", torch.linspace(0.0, cfg.rbf_max_cm, cfg.rbf_centres), persistent=False)
        self.rbf_sigma = cfg.rbf_max_cm / (cfg.rbf_centres - 1)

    def rbf_bias(self, cm_q: torch.Tensor, cm_k: torch.Tensor) -> torch.Tensor:
        """f_RBF of eq. 8: cm_q (..., Lq), cm_k (..., Lk) -> (..., heads, Lq, Lk).

        W+ applies where p_i^gen - p_j^gen >= 0 (i the query), W- elsewhere.
        """
        H = self.heads
        d = cm_q[..., :, None] - cm_k[..., None, :]
        phi = rbf_expand(d.abs(), self.rbf_centres, self.rbf_sigma)  # (..., Lq, Lk, c)
        both = phi @ torch.cat([self.rbf_pos, self.rbf_neg]).t()  # (..., Lq, Lk, 2H): one product for both signs
        b = torch.where((d >= 0)[..., None], both[..., :H], both[..., H:])
        return b.movedim(-1, -3)

    def window_bias(self, meta: StageMeta, left: torch.Tensor | None = None, right: torch.Tensor | None = None) -> torch.Tensor:
        """(nW, heads, w, w) additive bias for consecutive windows of `meta`: the cM term, the mask,
        and, given the (L, heads*p) left/right position projections, the bp term of eq. 8."""
        w, H = self.window, self.heads
        nW = len(meta) // w
        bias = self.rbf_bias(meta.cm.view(nW, w), meta.cm.view(nW, w))
        if left is not None:
            # The bp term depends on positions only: one (nW, H, w, w) product for the whole batch
            # instead of appending p columns to every person's q and k.
            p = left.shape[1] // H
            lw = left.view(nW, w, H, p).transpose(1, 2)
            rw = right.view(nW, w, H, p).transpose(1, 2)
            bias = bias + lw @ rw.transpose(-1, -2)
        chrom = meta.chrom.view(nW, w)
        allowed = meta.valid.view(nW, 1, w) & (chrom[:, :, None] == chrom[:, None, :])
        # Every query may see itself, so no softmax row is empty (padding queries are discarded later).
        allowed = allowed | torch.eye(w, dtype=torch.bool, device=allowed.device)
        return bias.masked_fill(~allowed[:, None], float("-inf"))

    def forward(self, x: torch.Tensor, meta: StageMeta, shift: bool) -> torch.Tensor:
        B, L, C = x.shape
        w, H, hd = self.window, self.heads, self.head_dim
        if L % w or len(meta) != L:
            raise ValueError(f"window attention: length {L} must be a multiple of {w} and match metadata ({len(meta)})")
        pe = meta.encoding(self.cfg)
        left, right = self.pe_left(pe), self.pe_right(pe)  # (L, H*p)
        if shift:
            half = w // 2
            x = F.pad(x, (0, 0, half, w - half))
            left = F.pad(left, (0, 0, half, w - half))
            right = F.pad(right, (0, 0, half, w - half))
            meta = meta.pad(half, w - half)
        nW = x.shape[1] // w
        bias = self.window_bias(meta, left, right).to(x.dtype)  # (nW, H, w, w), shared by the batch
        q, k, v = self.qkv(x).view(B, nW, w, 3, H, hd).permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, H, w, hd)
        if _fused_attention(x):
            o = F.scaled_dot_product_attention(
                q.reshape(B, nW * H, w, hd), k.reshape(B, nW * H, w, hd), v.reshape(B, nW * H, w, hd),
                attn_mask=bias.view(1, nW * H, w, w), scale=hd**-0.5,
            ).view(B, nW, H, w, hd)
        else:
            # Windows of a few tokens: plain batched products beat the CPU SDPA kernels, whose
            # per-head overhead and mask checks dominate at w = 10. Scores are kept transposed
            # (key, query): the CPU softmax over a short last dimension is ~4x slower than over
            # the second-last one, and the transpose back is free inside the second product.
            s_t = torch.matmul(k, q.transpose(-1, -2) * hd**-0.5) + bias.transpose(-1, -2).contiguous()
            o = torch.matmul(torch.softmax(s_t, dim=-2).transpose(-1, -2), v)
        o = o.transpose(2, 3).reshape(B, nW * w, C)
        if shift:
            o = o[:, half : half + L]
        return self.proj(o)


class SwinBlock1d(nn.Module):
    """Pre-norm transformer block: (shifted) window attention then MLP; invalid tokens kept at 0."""

    def __init__(self, cfg: ModelConfig, dim: int, shift: bool):
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GeneticWindowAttention(cfg, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, cfg.mlp_ratio * dim), nn.GELU(), nn.Linear(cfg.mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, meta: StageMeta) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), meta, self.shift)
        x = x + self.mlp(self.norm2(x))
        return x * meta.valid[None, :, None].to(x.dtype)


class AttentionPool1d(nn.Module):
    """Down-sampling by `rate`: learnable-query attention within each group of `rate` tokens."""

    def __init__(self, cfg: ModelConfig, in_dim: int, out_dim: int):
        super().__init__()
        self.rate, self.heads, self.head_dim = cfg.pool_rate, cfg.heads, in_dim // cfg.heads
        self.norm = nn.LayerNorm(in_dim)
        self.query = nn.Parameter(torch.randn(cfg.heads, self.head_dim) * self.head_dim**-0.5)
        self.kv = nn.Linear(in_dim, 2 * in_dim)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, meta: StageMeta) -> tuple[torch.Tensor, StageMeta]:
        B, L, C = x.shape
        r, H, hd = self.rate, self.heads, self.head_dim
        nP = L // r
        k, v = self.kv(self.norm(x)).view(B, nP, r, 2, H, hd).unbind(3)  # (B, nP, r, H, hd)
        valid = meta.valid.view(nP, r)
        # A group with no valid member attends uniformly; its output is invalid and zeroed below.
        allowed = valid | ~valid.any(1, keepdim=True)
        mask = torch.zeros(nP, r, 1, dtype=k.dtype, device=k.device).masked_fill(~allowed[:, :, None], float("-inf"))
        # One query per head and group: elementwise products in the kv layout avoid the head
        # permutations (copies) an attention kernel needs; the softmax runs over the group axis.
        s = (k * (self.query.to(k.dtype) * hd**-0.5)).sum(-1) + mask  # (B, nP, r, H)
        o = (torch.softmax(s, dim=2)[..., None] * v).sum(2)  # (B, nP, H, hd)
        pooled = meta.pool(r)
        o = self.out(o.view(B, nP, H * hd))
        return o * pooled.valid[None, :, None].to(o.dtype), pooled


class GlobalReadout1d(nn.Module):
    """Learnable-query multi-head attention over all valid tokens of one stage: (B, L, C) -> (B, C)."""

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, dim // cfg.heads
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.randn(cfg.heads, self.head_dim) * self.head_dim**-0.5)
        self.kv = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, meta: StageMeta) -> torch.Tensor:
        B, L, C = x.shape
        H, hd = self.heads, self.head_dim
        k, v = self.kv(self.norm(x)).view(B, L, 2, H, hd).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        q = self.query.view(1, H, 1, hd).expand(B, H, 1, hd).to(k.dtype)
        mask = torch.zeros(L, dtype=k.dtype, device=k.device).masked_fill(~meta.valid, float("-inf"))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.view(1, 1, 1, L))
        return o.reshape(B, C)


def _check_snp_inputs(geno: torch.Tensor, chrom: torch.Tensor, bp: torch.Tensor, cm: torch.Tensor, mask: torch.Tensor | None) -> None:
    if geno.dim() != 2:
        raise ValueError(f"genotypes must be (samples, SNPs); got shape {tuple(geno.shape)}")
    L = geno.shape[1]
    for name, t in (("chrom", chrom), ("bp", bp), ("cm", cm)) + ((("mask", mask),) if mask is not None else ()):
        if t.dim() != 1 or t.shape[0] != L:
            raise ValueError(f"{name} must be ({L},) to match genotypes {tuple(geno.shape)}; got {tuple(t.shape)}")


def standardized_dosage(geno: torch.Tensor, af: torch.Tensor | None) -> torch.Tensor:
    """(B, L) int8/long genotypes and (L,) A1 frequencies -> (B, L) float32 (g - 2p) / sqrt(2p(1 - p)).

    Missing calls (not 0/1/2) become 0, the mean. Without `af` every frequency is taken as 0.5
    (never estimated from the rows given: a person's encoding must not depend on the batch).
    Frequencies are clipped to [0.001, 0.999], so a monomorphic SNP gives finite values.
    """
    g = geno.long()
    ok = (g >= 0) & (g <= 2)
    gf = torch.where(ok, g, torch.zeros_like(g)).to(torch.float32)
    if af is None:
        af = torch.full((g.shape[1],), 0.5)
    p = af.to(device=gf.device, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
    s = (gf - 2 * p) * torch.rsqrt(2 * p * (1 - p))
    return torch.where(ok, s, torch.zeros_like(s))


def genotype_classes(geno: torch.Tensor) -> torch.Tensor:
    """int8/long genotypes -> long classes 0, 1, 2, and 3 for missing (-127 or anything else)."""
    g = geno.long()
    return torch.where((g >= 0) & (g <= 2), g, torch.full_like(g, MISSING_CLASS))


class GeneticTransformer(nn.Module):
    """The genetics-informed transformer: embedding, window stages joined by pooling, readouts."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dims = cfg.genetic_dims
        # The crop alignment of the subset property; the layout pads less (module docstring).
        self.block = cfg.window * cfg.pool_rate ** (len(dims) - 1)
        before_pool = cfg.window * cfg.pool_rate // math.gcd(cfg.window, cfg.pool_rate)
        self.units = [before_pool] * (len(dims) - 1) + [cfg.window]  # run length multiple per stage
        self.geno_embed = nn.Embedding(4, dims[0])
        self.standardized = getattr(cfg, "genetic_input", "standardized") == "standardized"
        if self.standardized:  # token = s * dose + (missing ? e_missing : e_called) + chromosome
            self.dose = nn.Parameter(torch.randn(dims[0]))
        self.chrom_embed = nn.Embedding(cfg.n_chrom_codes, dims[0])
        self.stages = nn.ModuleList(
            nn.ModuleList(SwinBlock1d(cfg, d, shift=bool(i % 2)) for i in range(2 * cfg.blocks_per_stage)) for d in dims
        )
        self.pools = nn.ModuleList(AttentionPool1d(cfg, dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        self.readouts = nn.ModuleList(GlobalReadout1d(cfg, d) for d in dims)
        self.head = nn.Sequential(nn.LayerNorm(sum(dims)), nn.Linear(sum(dims), cfg.genetic_out_dim))

    def forward(
        self,
        geno: torch.Tensor,
        chrom: torch.Tensor,
        bp: torch.Tensor,
        cm: torch.Tensor,
        mask: torch.Tensor | None = None,
        af: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, L) genotypes with (L,) chrom, bp, cm [, mask, af] -> (B, genetic_out_dim)."""
        _check_snp_inputs(geno, chrom, bp, cm, mask)
        dev = self.geno_embed.weight.device
        chrom = chrom.to(dev).long()
        if chrom.numel() and (int(chrom.min()) < 0 or int(chrom.max()) >= self.cfg.n_chrom_codes):
            raise ValueError(f"chromosome codes must be in 0..{self.cfg.n_chrom_codes - 1}; got {int(chrom.min())}..{int(chrom.max())}")
        layout = make_layout(chrom, bp.to(dev), cm.to(dev), None if mask is None else mask.to(dev), self.units[0])
        meta = layout.meta
        if not bool(meta.valid.any()):
            raise ValueError("genetic encoder: no SNP left (all masked or none given)")
        tok = layout.index.clamp(min=0)
        cls = genotype_classes(geno.to(dev))[:, tok]
        if self.standardized:
            s = standardized_dosage(geno.to(dev), None if af is None else af.to(dev))[:, tok]
            called = torch.where(cls == MISSING_CLASS, cls, torch.zeros_like(cls))
            x = s[..., None].to(self.dose.dtype) * self.dose + self.geno_embed(called)
        else:
            x = self.geno_embed(cls)
        x = x + self.chrom_embed(meta.chrom)[None]
        x = x * meta.valid[None, :, None].to(x.dtype)
        recompute = self.cfg.checkpoint_genetic and self.training and torch.is_grad_enabled()

        def run(fn, *args):
            return checkpoint(fn, *args, use_reentrant=False) if recompute else fn(*args)

        summaries = []
        for s, blocks in enumerate(self.stages):
            meta.encoding(self.cfg)  # computed once, outside the recomputed region
            spans = meta.chunks(self.cfg.genetic_chunk_tokens)
            parts = [meta.slice(a, b) for a, b in spans]
            for blk in blocks:
                if len(spans) == 1:
                    x = run(blk, x, meta)
                else:
                    x = torch.cat([run(blk, x[:, a:b], m) for (a, b), m in zip(spans, parts)], dim=1)
            summaries.append(run(self.readouts[s], x, meta))
            if s < len(self.pools):
                x, meta = run(self.pools[s], x, meta)
                x, meta = repad_stage(x, meta, self.units[s + 1])
        return self.head(torch.cat(summaries, dim=1))


class MLPGeneticEncoder(nn.Module):
    """Baseline: a two-layer MLP on the standardized allele counts of a fixed SNP array (ContIG-style).

    Needs exactly the n_snps it was built for. A SNP mask (gim's augmentation for fixed arrays)
    zeroes the masked SNPs and rescales the rest by L / kept, as dropout does, so the input's
    scale does not change with the share kept. `hidden = 0` makes it linear: one (n_snps, out)
    map of standardized genotypes, a set of polygenic scores.
    """

    def __init__(self, cfg: ModelConfig, n_snps: int, hidden: int | None = None):
        super().__init__()
        self.n_snps = n_snps
        h = cfg.mlp_hidden if hidden is None else hidden
        if h:
            self.net = nn.Sequential(nn.Linear(n_snps, h), nn.ReLU(), nn.Linear(h, cfg.genetic_out_dim))
        else:
            self.net = nn.Sequential(nn.Linear(n_snps, cfg.genetic_out_dim))
        self.standardized = getattr(cfg, "genetic_input", "standardized") == "standardized"

    def forward(self, geno, chrom=None, bp=None, cm=None, mask=None, af=None) -> torch.Tensor:
        if geno.dim() != 2 or geno.shape[1] != self.n_snps:
            raise ValueError(f"{type(self).__name__} was built for {self.n_snps} SNPs; got genotypes {tuple(geno.shape)}")
        w = self.net[0].weight
        g = geno.to(w.device)
        if self.standardized:
            x = standardized_dosage(g, None if af is None else af.to(w.device)).to(w.dtype)
        else:  # the first version: counts centred at 1, missing at 1
            g = g.long()
            x = torch.where((g >= 0) & (g <= 2), g, torch.ones_like(g)).to(w.dtype) - 1.0
        if mask is not None:
            m = mask.to(x.device, x.dtype)
            x = x * (m * (m.numel() / m.sum().clamp(min=1)))[None]
        return self.net(x)


def build_genetic_encoder(cfg: ModelConfig, n_snps: int) -> nn.Module:
    """The genetic encoder cfg.genetic_encoder names: 'transformer', 'mlp' or 'linear'."""
    if cfg.genetic_encoder == "transformer":
        return GeneticTransformer(cfg)
    return MLPGeneticEncoder(cfg, n_snps, hidden=0 if cfg.genetic_encoder == "linear" else None)
