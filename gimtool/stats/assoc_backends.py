"""The backends of the association scan (gimtool.stats.assoc is the model): the sums a chunk
of SNPs needs, G0ᵀ[Yr | Q0 | 1], Σg, Σg², the excluded rows' sums and the missing calls, from

* decoded genotypes (:class:`Products`, :func:`scan_chunk`: numpy; the reference and the path for
  in-memory arrays),
* packed .bed rows on the CPU (:class:`PackedScan`: the compiled module gimtool._speedups when it
  was built, numpy otherwise),
* packed .bed rows on a torch device (:class:`TorchPackedScan`).

Each hands its sums to :func:`gimtool.stats.assoc.finish_chunk`.
"""

from __future__ import annotations

import numpy as np

from gimtool.stats.assoc import (
    MISSING_INT8,
    ChunkResult,
    ExcludedSums,
    MissingFix,
    Prepared,
    finish_chunk,
    missing_fix_numpy,
)


class Products:
    """The dense part of a chunk scan from decoded genotypes (the reference for the packed kernels
    and the path for in-memory arrays): G0ᵀ[Yr | Q0 | 1], Σg², and for each phenotype the sums
    Q0ᵀg, Σg, Σg² over its excluded rows E_p. Buffers are reused across chunks.
    """

    def __init__(self, prep: Prepared, max_m: int, dtype: str = "float64"):
        self.n0 = len(prep.samples)
        self.max_m = max_m
        self.k = prep.k
        self.np_dtype = np.dtype(dtype)
        ones = np.ones((self.n0, 1))
        # per phenotype: rows E_p and the matrix [Q0 | 1] on them
        z = [np.ascontiguousarray(np.concatenate([prep.q0, ones], axis=1)[e]) for e in prep.excl]
        self.x = prep.x.astype(self.np_dtype)
        self.flat = np.empty(self.n0 * max_m, dtype=self.np_dtype)
        self.gflat = np.empty(max((len(e) for e in prep.excl), default=0) * max_m, dtype=self.np_dtype)
        self.out = np.empty((max_m, prep.x.shape[1]), dtype=self.np_dtype)
        self.excl = [(e, zz.astype(self.np_dtype)) for e, zz in zip(prep.excl, z)]

    def __call__(self, g0: np.ndarray):
        """g0: (n0, m) int8 or float without missing values (missing already set to 0).

        Returns prod (m, p+k+1), s2 (m,), and per phenotype (ue (m, k), s1e (m,), s2e (m,)).
        """
        m = g0.shape[1]
        assert m <= self.max_m
        k = self.k
        buf = self.flat[: self.n0 * m].reshape(self.n0, m)
        np.copyto(buf, g0)
        out = self.out[:m]
        np.matmul(buf.T, self.x, out=out)
        s2 = np.einsum("ij,ij->j", buf, buf)
        ex = []
        for e, z in self.excl:
            if len(e) == 0:
                ex.append(None)
                continue
            ge = np.take(buf, e, axis=0, out=self.gflat[: len(e) * m].reshape(len(e), m))
            uz = ge.T @ z
            ex.append(ExcludedSums(uz[:, :k].astype(np.float64), uz[:, k].astype(np.float64),
                                   np.einsum("ij,ij->j", ge, ge).astype(np.float64)))
        return out.astype(np.float64), s2.astype(np.float64), ex


def scan_chunk(prep: Prepared, g: np.ndarray, products: Products | None = None) -> ChunkResult:
    """Association of a SNP chunk with every phenotype, from decoded genotypes.

    g: (n0, m) genotypes of the S0 samples (rows in ``prep.samples`` order): int8 with
    MISSING_INT8, or float with NaN. `products` does the dense part (CPU float64 by default;
    float32 loses about 1e-5 relative precision in β).
    """
    n0 = len(prep.samples)
    assert g.ndim == 2 and g.shape[0] == n0, f"genotypes must be ({n0}, m), got {g.shape}"
    m = g.shape[1]
    if products is None:
        products = Products(prep, m)

    # missing calls -> 0 so they drop out of every sum; their rows are corrected below
    if g.dtype == np.int8:
        # one allocation-free pass decides whether the chunk has any missing call at all
        if m and g.min() < 0:
            miss = g == MISSING_INT8
            g0 = np.where(miss, np.int8(0), g)
        else:
            miss, g0 = None, g
    else:
        miss = np.isnan(g)
        g0 = np.where(miss, 0.0, g) if miss.any() else g

    prod, s2, ex = products(g0)
    p, k = prep.n_pheno, prep.k
    called = np.full(m, n0, dtype=np.int64)
    missing = None
    if miss is not None and miss.any():
        has_miss = np.flatnonzero(miss.any(axis=0))
        called -= miss.sum(axis=0)
        snp, sample = np.nonzero(miss[:, has_miss].T)  # sorted by SNP
        missing = (has_miss, missing_fix_numpy(prep, snp, sample, len(has_miss)))
    return finish_chunk(prep, prod[:, :p], prod[:, p : p + k], prod[:, p + k], s2, ex, called, missing)


# .bed 2-bit codes, low bits first: 00 hom A1 (2 copies of A1), 01 missing, 10 het, 11 hom A2
_CODE_DOSAGE = np.array([2.0, 0.0, 1.0, 0.0])  # missing decodes to 0: it drops out of every sum
_CODE_MISSING = np.array([False, True, False, False])


def has_compiled_kernel() -> bool:
    """Whether gimtool._speedups (the compiled scan kernel) was built."""
    return _compiled_kernel("auto", np.dtype("float64"))


def _compiled_kernel(kernel: str, dtype: np.dtype) -> bool:
    """Whether PackedScan uses the compiled kernel: `kernel` auto (when built, for float64), c
    (required) or numpy."""
    if kernel == "numpy" or (kernel == "auto" and dtype != np.float64):
        return False
    try:
        from gimtool import _speedups  # noqa: F401  (built by setup.py; optional)
    except ImportError:
        if kernel == "c":
            raise
        return False
    if dtype != np.float64:
        raise ValueError("the compiled kernel computes in float64")
    return True


def byte_table(values: np.ndarray) -> np.ndarray:
    """(256, 4) table: the four samples' values of every possible .bed byte."""
    v = np.arange(256)
    return np.stack([values[(v >> (2 * s)) & 3] for s in range(4)], axis=1)


class PackedScan:
    """The sums of a chunk scan straight from packed .bed rows, on the CPU.

    X = [Yr | Q0 | 1] is laid out over all .bed samples (zero rows for samples outside S0), so no
    genotype matrix is ever materialized. Two implementations of the same sums:

    * compiled (``kernel="auto"`` when gimtool._speedups was built, float64): each row is
      decoded in registers and multiplied by X in blocks of 8 or 16 columns as it is decoded; the
      phenotypes' excluded samples are sorted into groups sharing the set of phenotypes that
      exclude them, so each is decoded once; counts by 64-bit popcounts.
    * numpy (``kernel="numpy"``, or float32): each tile of `block` SNPs × `tile` samples is
      decoded through a 256-entry byte table into a cache-sized buffer and multiplied by the
      matching rows of X with BLAS; the excluded samples' genotypes are read from their bytes.

    Σg and Σg² over S0 and the missing-call counts come from popcounts of the packed bits. Both
    give the sums of :class:`Products` (float64; genotypes are small integers and decode exactly)
    up to the order of addition.

    Thread-safe: every call allocates its own buffers, so chunks can run in parallel threads
    (the compiled kernel releases the GIL; the numpy one runs with single-threaded BLAS).
    """

    def __init__(self, prep: Prepared, n_bed: int, block: int | None = None, dtype: str = "float64",
                 tile: int | None = None, kernel: str = "auto"):
        self.prep = prep
        self.n_bed = n_bed
        self.nb = (n_bed + 3) // 4
        # decoded tiles of block SNPs x tile samples (~0.5 MB) stay in the core's cache between the
        # decode and the product: the decode writes 32 bytes per .bed byte, so a tile that spills
        # to memory makes the scan bandwidth-bound (and threads stop helping)
        self.block = block or 64
        self.tile_bytes = max(1, (tile or 1024) // 4)
        self.dtype = np.dtype(dtype)
        rows = prep.samples
        assert rows.max(initial=-1) < n_bed
        self.x = np.zeros((4 * self.nb, prep.x.shape[1]), dtype=self.dtype)
        self.x[rows] = prep.x
        self.lut = byte_table(_CODE_DOSAGE).astype(self.dtype)
        self.miss_lut = byte_table(_CODE_MISSING)
        self.s0_mask = np.zeros(n_bed, dtype=bool)
        self.s0_mask[rows] = True
        self.s0_count = len(rows)
        self.s0_pos = np.full(4 * self.nb, -1)  # .bed sample -> its index in S0, or -1
        self.s0_pos[rows] = np.arange(len(rows))
        self.byte_has_missing = self.miss_lut.any(axis=1)
        # the union of the phenotypes' excluded rows (in .bed sample indices); per phenotype, the
        # positions of its own in the union and [Q0 | 1] on them
        self.union = np.unique(np.concatenate([rows[e] for e in prep.excl] + [np.zeros(0, np.int64)]))
        q1 = np.concatenate([prep.q0, np.ones((len(rows), 1))], axis=1)
        self.excl = [(np.searchsorted(self.union, rows[e]), np.ascontiguousarray(q1[e])) for e in prep.excl]
        self.ubyte = self.union // 4
        self.ushift = (2 * (self.union % 4)).astype(np.uint8)
        self.dosage = _CODE_DOSAGE.copy()  # float64: these sums are formed in full precision
        # the compiled kernel's group sums hold up to 62 covariates (+ intercept)
        self.compiled = prep.k <= 63 and _compiled_kernel(kernel, self.dtype)
        if self.compiled:
            self._setup_compiled(q1)

    def _setup_compiled(self, q1: np.ndarray) -> None:
        """Layouts for the compiled kernel: X in contiguous blocks of 16 (and a last of 8) columns,
        the S0 mask in .bed byte layout, and the union of excluded samples sorted into groups that
        share the set of phenotypes excluding them. q1: [Q0 | 1] on S0."""
        c = self.x.shape[1]
        npan = (c + 7) // 8
        xw = np.zeros((self.x.shape[0], 8 * npan))
        xw[:, :c] = self.x
        # blocks of 16 columns (one pass each on AVX-512) and a last one of 8 if the count is odd
        self.panels = [(a, np.ascontiguousarray(xw[:, a : a + 16])) for a in range(0, 8 * npan, 16)]
        from gimtool.stats.qc import pack_sample_mask

        self.s0_words = pack_sample_mask(self.s0_mask).view(np.uint64)
        p, k = self.prep.n_pheno, self.prep.k
        member = np.zeros((len(self.union), p), dtype=bool)
        for j, (pos, _) in enumerate(self.excl):
            member[pos, j] = True
        pats, gid = np.unique(member, axis=0, return_inverse=True)
        order = np.argsort(gid.ravel(), kind="stable")
        s0_pos = np.full(self.n_bed, -1)
        s0_pos[self.prep.samples] = np.arange(len(self.prep.samples))
        u = self.union[order]
        self.g_byte = (u // 4).astype(np.int64)
        self.g_shift = (2 * (u % 4)).astype(np.uint8)
        # k + 1 columns padded to one of the compiled kernel's widths
        self.g_zw = next(w for w in (4, 8, 12, 16, 24, 32, 64) if w >= k + 1)
        self.g_z = np.zeros((len(u), self.g_zw))
        self.g_z[:, : k + 1] = q1[s0_pos[u]]
        self.g_starts = np.concatenate([[0], np.cumsum(np.bincount(gid.ravel(), minlength=len(pats)))]).astype(np.int64)
        # each group's phenotypes, as CSR
        self.g_mstart = np.concatenate([[0], np.cumsum(pats.sum(axis=1))]).astype(np.int64)
        self.g_members = np.nonzero(pats)[1].astype(np.int64)
        # for the missing calls: each .bed sample's group (-1: excluded by no phenotype), the
        # phenotypes' Gram matrices, residual sums of squares and sample counts
        self.m_gid = np.full(4 * self.nb, -1, dtype=np.int64)
        self.m_gid[self.union] = gid.ravel()
        self.gram = np.ascontiguousarray(self.prep.gram, dtype=np.float64)
        self.yy0 = np.ascontiguousarray(self.prep.yy, dtype=np.float64)
        self.n0 = np.ascontiguousarray(self.prep.n, dtype=np.int64)

    def products(self, raw: np.ndarray) -> tuple[np.ndarray, list]:
        """(G0ᵀX (m, p+k+1) float64, per phenotype None or (Q0ᵀg, Σg, Σg²) over E_j)."""
        if self.compiled:
            return self._products_compiled(raw)
        return self._products_numpy(raw)

    def _products_compiled(self, raw: np.ndarray) -> tuple[np.ndarray, list]:
        from gimtool import _speedups

        raw = np.ascontiguousarray(raw)
        m = raw.shape[0]
        p, k = self.prep.n_pheno, self.prep.k
        ld = sum(xp.shape[1] for _, xp in self.panels)
        out = np.empty((m, ld))
        for a, xp in self.panels:
            _speedups.products(raw, self.nb, xp, xp.shape[1], out, ld, a)
        ex: list = [None] * p
        if len(self.g_starts) > 1:
            agg = np.empty((m, k + 2, p))  # per phenotype: Σ g·[Q0 | 1] and #(2 copies) over E_j
            _speedups.group_sums(raw, self.nb, self.g_byte, self.g_shift, self.g_z, k + 1, self.g_zw, self.g_starts,
                                  self.g_mstart, self.g_members, p, agg)
            for j, (pos, _) in enumerate(self.excl):
                if len(pos):
                    ex[j] = ExcludedSums(agg[:, :k, j], agg[:, k, j], agg[:, k, j] + 2.0 * agg[:, k + 1, j])
        return out[:, : self.x.shape[1]], ex

    def _products_numpy(self, raw: np.ndarray) -> tuple[np.ndarray, list]:
        m = raw.shape[0]
        k = self.prep.k
        prod = np.zeros((m, self.x.shape[1]), dtype=self.dtype)
        tb = self.tile_bytes
        buf = np.empty(self.block * tb * 4, dtype=self.dtype)
        for a in range(0, m, self.block):
            r = raw[a : a + self.block]
            out = prod[a : a + len(r)]
            for c in range(0, self.nb, tb):
                rt = r[:, c : c + tb]
                g = np.take(self.lut, rt, axis=0, out=buf[: rt.size * 4].reshape(*rt.shape, 4))
                out += g.reshape(len(r), -1) @ self.x[4 * c : 4 * (c + rt.shape[1])]
        ex: list = [None] * self.prep.n_pheno
        if len(self.union):
            # the excluded samples' genotypes, straight from their bytes; per phenotype only its own
            codes = (raw[:, self.ubyte] >> self.ushift) & 3  # (m, nu)
            for j, (pos, q) in enumerate(self.excl):
                if len(pos):
                    cj = codes[:, pos]
                    uq = self.dosage[cj] @ q  # (m, k+1): Q0ᵀg and Σg over E_j
                    hom = np.count_nonzero(cj == 0, axis=1)  # Σg² = Σg + 2·#(2 copies)
                    ex[j] = ExcludedSums(uq[:, :k], uq[:, k], uq[:, k] + 2.0 * hom)
        return prod.astype(np.float64, copy=False), ex

    def __call__(self, raw: np.ndarray) -> ChunkResult:
        """raw: (m, ceil(n_bed / 4)) uint8 .bed rows. Returns the chunk's results."""
        prep = self.prep
        assert raw.shape[1] == self.nb, f"bed rows must have {self.nb} bytes, got {raw.shape[1]}"
        p, k = prep.n_pheno, prep.k
        if self.compiled:
            from gimtool import _speedups

            raw = np.ascontiguousarray(raw)
            counts = np.empty((raw.shape[0], 4), dtype=np.int64)
            _speedups.code_counts(raw, self.nb, self.s0_words, counts)
        else:
            from gimtool.stats.qc import packed_genotype_counts

            counts = packed_genotype_counts(raw, self.n_bed, self.s0_mask)
        # counts: hom A2, het, hom A1, missing over S0
        s1 = (counts[:, 1] + 2 * counts[:, 2]).astype(np.float64)
        s2 = (counts[:, 1] + 4 * counts[:, 2]).astype(np.float64)
        prod, ex = self.products(raw)
        has_miss = np.flatnonzero(counts[:, 3] > 0)
        called = self.s0_count - counts[:, 3]
        missing = None
        if len(has_miss):
            missing = (has_miss, self._missing_fix_compiled(raw, has_miss) if self.compiled else self._missing_fix_numpy(raw, has_miss))
        return finish_chunk(prep, prod[:, :p], prod[:, p : p + k], s1, s2, ex, called, missing)

    def _missing_fix_numpy(self, raw: np.ndarray, rows: np.ndarray) -> MissingFix:
        """The missing calls among S0 of `rows`, found byte by byte (only bytes holding a missing
        code are expanded to their samples)."""
        sub = raw[rows]
        r, byte = np.nonzero(self.byte_has_missing[sub])
        codes = sub[r, byte]
        snp, sample = [], []
        for s in range(4):
            hit = ((codes >> (2 * s)) & 3) == 1
            snp.append(r[hit])
            sample.append(4 * byte[hit] + s)
        snp, sample = np.concatenate(snp), np.concatenate(sample)
        pos = self.s0_pos[sample]
        inside = pos >= 0
        snp, pos = snp[inside], pos[inside]
        order = np.lexsort((pos, snp))
        return missing_fix_numpy(self.prep, snp[order], pos[order], len(rows))

    def _missing_fix_compiled(self, raw: np.ndarray, rows: np.ndarray) -> MissingFix:
        from gimtool import _speedups

        prep = self.prep
        p, k = prep.n_pheno, prep.k

        def fix(u, s2, gy0):
            shape = (len(rows), p)
            gg, gy, yy = np.empty(shape), np.empty(shape), np.empty(shape)
            nobs = np.empty(shape, dtype=np.int64)
            _speedups.missing_fix(raw, self.nb, self.s0_words, np.ascontiguousarray(rows, dtype=np.int64), self.x,
                                  self.x.shape[1], p, k, self.m_gid, self.g_mstart, self.g_members, self.gram,
                                  np.ascontiguousarray(u), np.ascontiguousarray(s2), np.ascontiguousarray(gy0),
                                  self.yy0, self.n0, gg, gy, yy, nobs)
            return gg, gy, yy, nobs

        return fix


class TorchPackedScan(PackedScan):
    """:class:`PackedScan` with its products in PyTorch, for ``--device cuda``: the packed rows
    travel to the device (a quarter of the bytes of decoded genotypes; pinned memory), are decoded
    there through the same byte table and multiplied by X; counts and missing calls stay popcounts
    on the CPU. Runs on any torch device (the tests run it on the CPU)."""

    def __init__(self, prep: Prepared, n_bed: int, device, dtype: str = "float64"):
        import torch

        super().__init__(prep, n_bed, dtype="float64", kernel="numpy")
        self.torch = torch
        self.device = torch.device(str(device))
        self.tdtype = getattr(torch, dtype)
        p, k = prep.n_pheno, prep.k
        # every phenotype's [Q0 | 1] on its excluded rows, side by side over the union's rows
        z = np.zeros((len(self.union), p * (k + 1)))
        ind = np.zeros((len(self.union), p))
        for j, (pos, q) in enumerate(self.excl):
            z[pos, j * (k + 1) : (j + 1) * (k + 1)] = q
            ind[pos, j] = 1.0

        def dev(a, dt=None):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dt or self.tdtype)

        self.x_t = dev(self.x)
        self.lut_t = dev(self.lut)
        self.union_t = dev(self.union, torch.int64)
        self.z_t = dev(z)
        self.ind_t = dev(ind)

    def products(self, raw: np.ndarray) -> tuple[np.ndarray, list]:
        torch = self.torch
        m = raw.shape[0]
        p, k = self.prep.n_pheno, self.prep.k
        host = torch.from_numpy(np.require(raw, requirements=["C", "W"]))
        if self.device.type == "cuda":
            host = host.pin_memory()
        idx = host.to(self.device, non_blocking=True).reshape(-1).int()
        g = self.lut_t.index_select(0, idx).reshape(m, 4 * self.nb)
        prod = (g @ self.x_t).to("cpu", torch.float64).numpy()
        ex: list = [None] * p
        if len(self.union):
            ge = g.index_select(1, self.union_t)
            uz = (ge @ self.z_t).to("cpu", torch.float64).numpy()
            s2e = (ge.square() @ self.ind_t).to("cpu", torch.float64).numpy()
            for j, (pos, _) in enumerate(self.excl):
                if len(pos):
                    blk = uz[:, j * (k + 1) : (j + 1) * (k + 1)]
                    ex[j] = ExcludedSums(blk[:, :k], blk[:, k], s2e[:, j])
        return prod, ex
