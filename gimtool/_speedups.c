/*
 * gimtool's compiled module (optional: every function here has a numpy/polars equivalent that
 * gimtool uses when the module is not built, and the tests compare the two).
 *
 * - The association scan on packed PLINK .bed rows (gimtool.stats.assoc.PackedScan). The numpy
 *   kernel decodes tiles of rows through a byte table and multiplies them with BLAS; here the
 *   decode happens in registers and the product is formed as it is decoded, so each genotype is
 *   touched once. Results are the same sums (float64, genotypes are exact small integers), in a
 *   different order of addition. Also popcount genotype counts and Student-t P values.
 * - prep-geno and the genotype store (gimtool.stats.qc, gimtool.io.genostore): .bed rows
 *   transposed into the store's sample-major 2-bit rows, the store's rows decoded to int8, the
 *   .bed rows of a subset of people, missing calls per person, and the store's rows written.
 * - The text of summary statistics files (gimtool.io.sumstats): in _sumstats_format.c.
 *
 * .bed 2-bit codes, low bits first: 00 = 2 copies of A1, 01 = missing (counts as 0 here: the
 * caller corrects for missing calls), 10 = 1 copy, 11 = 0 copies.
 *
 * Arrays arrive through the buffer protocol (no numpy headers needed to build); the GIL is
 * released while computing so that Python threads run chunks in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define _USE_MATH_DEFINES
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <errno.h>
#include <unistd.h>
#endif

#include "_speedups_buffers.h"

static const double DOSAGE[4] = {2.0, 0.0, 1.0, 0.0};

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__linux__)
/* one build, the widest vectors the running CPU has (chosen once at load time) */
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif


#define PW 8 /* panel width: columns of X per pass, accumulated in vector registers */
#define SB 4 /* SNPs decoded together: each X row loaded from cache feeds SB accumulators */

/*
 * out[j, col0 + t] = sum_i g[j, i] * xp[i * ldx + t] for t < PW, for the SNP rows j of raw.
 * raw: m x nb bytes; xp: (4 nb) rows of ldx >= PW columns (rows of samples beyond the .bed's
 * count are zero). SB x PW accumulators (4 x 8 doubles) fit in registers; wider blocks spill
 * (measured 2-20x slower with gcc 12), except on AVX-512 with explicit 512-bit vectors (below).
 */
MULTIVERSION static void product_panel(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb, const double *xp,
                                       Py_ssize_t ldx, double *out, Py_ssize_t ldo, Py_ssize_t col0) {
    Py_ssize_t j0 = 0;
    for (; j0 + SB <= m; j0 += SB) {
        double acc[SB][PW];
        memset(acc, 0, sizeof(acc));
        const uint8_t *r[SB];
        for (int s = 0; s < SB; s++) r[s] = raw + (j0 + s) * nb;
        for (Py_ssize_t b = 0; b < nb; b++) {
            unsigned c[SB];
            for (int s = 0; s < SB; s++) c[s] = r[s][b];
            const double *x = xp + (4 * b) * ldx;
            for (int q = 0; q < 4; q++, x += ldx) {
                double g[SB];
                for (int s = 0; s < SB; s++) g[s] = DOSAGE[(c[s] >> (2 * q)) & 3u];
                for (int s = 0; s < SB; s++)
                    for (int t = 0; t < PW; t++) acc[s][t] += g[s] * x[t];
            }
        }
        for (int s = 0; s < SB; s++) memcpy(out + (j0 + s) * ldo + col0, acc[s], sizeof(double) * PW);
    }
    for (; j0 < m; j0++) {
        double acc[PW];
        memset(acc, 0, sizeof(acc));
        const uint8_t *r = raw + j0 * nb;
        for (Py_ssize_t b = 0; b < nb; b++) {
            unsigned c = r[b];
            const double *x = xp + (4 * b) * ldx;
            for (int q = 0; q < 4; q++, x += ldx) {
                double g = DOSAGE[(c >> (2 * q)) & 3u];
                for (int t = 0; t < PW; t++) acc[t] += g * x[t];
            }
        }
        memcpy(out + j0 * ldo + col0, acc, sizeof(double) * PW);
    }
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__linux__)
#define HAVE_WIDE 1
/* Two panels (16 columns) in one pass, with 512-bit vectors: 8 zmm accumulators. 25% faster
 * than two passes of product_panel where AVX-512 exists; chosen at run time. */
typedef double v8d __attribute__((vector_size(64)));
__attribute__((target("arch=x86-64-v4"))) static void product_wide(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb,
                                                                    const double *xp, double *out, Py_ssize_t ldo,
                                                                    Py_ssize_t col0) {
    Py_ssize_t j0 = 0;
    for (; j0 + SB <= m; j0 += SB) {
        v8d a0[SB], a1[SB];
        for (int s = 0; s < SB; s++) a0[s] = a1[s] = (v8d){0, 0, 0, 0, 0, 0, 0, 0};
        const uint8_t *r[SB];
        for (int s = 0; s < SB; s++) r[s] = raw + (j0 + s) * nb;
        for (Py_ssize_t b = 0; b < nb; b++) {
            unsigned c[SB];
            for (int s = 0; s < SB; s++) c[s] = r[s][b];
            const double *x = xp + (4 * b) * 16;
            for (int q = 0; q < 4; q++, x += 16) {
                v8d x0, x1;
                memcpy(&x0, x, sizeof(x0));
                memcpy(&x1, x + 8, sizeof(x1));
                for (int s = 0; s < SB; s++) {
                    double g = DOSAGE[(c[s] >> (2 * q)) & 3u];
                    a0[s] += g * x0;
                    a1[s] += g * x1;
                }
            }
        }
        for (int s = 0; s < SB; s++) {
            memcpy(out + (j0 + s) * ldo + col0, &a0[s], sizeof(v8d));
            memcpy(out + (j0 + s) * ldo + col0 + 8, &a1[s], sizeof(v8d));
        }
    }
    if (j0 < m) { /* the last rows: the generic kernel, panel by panel */
        product_panel(raw + j0 * nb, m - j0, nb, xp, 16, out + j0 * ldo, ldo, col0);
        product_panel(raw + j0 * nb, m - j0, nb, xp + 8, 16, out + j0 * ldo, ldo, col0 + 8);
    }
}
#else
#define HAVE_WIDE 0
#endif

/* out[:, col0 : col0 + w] = G^T xp for xp of w = 8 or 16 columns */
static void products(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb, const double *xp, Py_ssize_t w, double *out,
                     Py_ssize_t ldo, Py_ssize_t col0) {
#if HAVE_WIDE
    if (w == 16 && __builtin_cpu_supports("avx512f")) {
        product_wide(raw, m, nb, xp, out, ldo, col0);
        return;
    }
#endif
    for (Py_ssize_t c = 0; c < w; c += PW) product_panel(raw, m, nb, xp + c, w, out, ldo, col0 + c);
}

/* products(raw, nb, xp, w, out, ldo, col0): out[:, col0:col0+w] = G^T xp, xp (4 nb) x w with
 * w = 8 or 16; wider right-hand sides are passed as several such blocks. */
static PyObject *py_products(PyObject *self, PyObject *args) {
    PyObject *oraw, *oxp, *oout;
    Py_ssize_t nb, ldo, col0, w;
    if (!PyArg_ParseTuple(args, "OnOnOnn", &oraw, &nb, &oxp, &w, &oout, &ldo, &col0)) return NULL;
    if (w != 8 && w != 16) return PyErr_Format(PyExc_ValueError, "products: block width must be 8 or 16, got %zd", w);
    Py_buffer b[3];
    const BufArg spec[3] = {{oraw, 0, 1, "raw"}, {oxp, 0, 8, "xp"}, {oout, 1, 8, "out"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    Py_ssize_t m = nb > 0 ? b[0].len / nb : 0;
    if (nb <= 0 || b[0].len != m * nb || b[1].len != 4 * nb * w * 8 || col0 < 0 || col0 + w > ldo || b[2].len < m * ldo * 8) {
        PyErr_SetString(PyExc_ValueError, "products: inconsistent array sizes");
        return done(b, 3, 1);
    }
    Py_BEGIN_ALLOW_THREADS
    products(b[0].buf, m, nb, b[1].buf, w, b[2].buf, ldo, col0);
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

/*
 * Sums over each phenotype's excluded samples. For phenotype i of SNP j:
 * out[j, 0:kw, i] = sum over its excluded samples u of g[j, u] * z[u, 0:kw], and
 * out[j, kw, i] = how many of them have 2 copies of A1.
 * The samples are sorted into groups that share the set of phenotypes excluding them, so each
 * sample is decoded once however many phenotypes exclude it: group p is u = starts[p] ..
 * starts[p + 1] - 1, and its phenotypes are members[mstart[p] .. mstart[p + 1] - 1].
 * Sample u is at byte ubyte[u], bit shift ushift[u] of a row. z rows are padded to zw columns
 * (one of the widths below); GSB SNPs share each sample's index and z loads.
 */
#if defined(__GNUC__)
typedef double v4d __attribute__((vector_size(32))); /* 4 doubles: gcc/clang vector extension */
#define V4_ZERO ((v4d){0.0, 0.0, 0.0, 0.0})
static inline v4d v4_load(const double *p) { v4d v; memcpy(&v, p, sizeof(v)); return v; }
#else /* portable fallback: a struct of 4 doubles, the compiler may or may not vectorize it */
typedef struct { double v[4]; } v4d;
#endif

#define GSB 8 /* SNPs per pass over a group's samples: they share its index and z loads (8: 25% faster than 4) */
#define DEFINE_GROUP_SUMS(ZW)                                                                      \
    MULTIVERSION static void group_sums_##ZW(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb,          \
                                             const int64_t *ubyte, const uint8_t *ushift,              \
                                             const double *z, Py_ssize_t kw, const int64_t *starts,    \
                                             Py_ssize_t ngroups, const int64_t *mstart,                \
                                             const int64_t *members, Py_ssize_t npheno, double *out) { \
        const Py_ssize_t ld = kw + 1; /* out[j, t, p] = out[(j * ld + t) * npheno + p] */             \
        memset(out, 0, sizeof(double) * m * ld * npheno);                                             \
        for (Py_ssize_t j0 = 0; j0 < m; j0 += GSB) {                                                    \
            int sb = m - j0 < GSB ? (int)(m - j0) : GSB;                                                 \
            const uint8_t *r[GSB];                                                                      \
            for (int s = 0; s < GSB; s++) r[s] = raw + (j0 + (s < sb ? s : 0)) * nb;                    \
            for (Py_ssize_t p = 0; p < ngroups; p++) {                                                 \
                v4d acc[GSB][ZW / 4];                                                                   \
                int64_t hom[GSB];                                                                       \
                for (int s = 0; s < GSB; s++) {                                                         \
                    hom[s] = 0;                                                                        \
                    for (int t = 0; t < ZW / 4; t++) ACC_ZERO(acc[s][t]);                              \
                }                                                                                      \
                for (int64_t u = starts[p]; u < starts[p + 1]; u++) {                                  \
                    const int64_t byte = ubyte[u];                                                     \
                    const unsigned sh = ushift[u];                                                     \
                    const double *zu = z + u * ZW;                                                     \
                    for (int s = 0; s < GSB; s++) {                                                     \
                        unsigned code = (r[s][byte] >> sh) & 3u;                                       \
                        hom[s] += (code == 0);                                                         \
                        const double g = DOSAGE[code];                                                 \
                        for (int t = 0; t < ZW / 4; t++) ACC_FMA(acc[s][t], g, zu + 4 * t);            \
                    }                                                                                  \
                }                                                                                      \
                for (int s = 0; s < sb; s++) {                                                         \
                    double a[ZW];                                                                      \
                    memcpy(a, acc[s], sizeof(a));                                                      \
                    for (int64_t e = mstart[p]; e < mstart[p + 1]; e++) {                              \
                        double *o = out + (j0 + s) * ld * npheno + members[e];                         \
                        for (Py_ssize_t t = 0; t < kw; t++) o[t * npheno] += a[t];                     \
                        o[kw * npheno] += (double)hom[s];                                              \
                    }                                                                                  \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

#if defined(__GNUC__)
#define ACC_ZERO(a) ((a) = V4_ZERO)
#define ACC_FMA(a, g, zp) ((a) += (g) * v4_load(zp))
#else
#define ACC_ZERO(a) memset(&(a), 0, sizeof(a))
#define ACC_FMA(a, g, zp) do { for (int i_ = 0; i_ < 4; i_++) (a).v[i_] += (g) * (zp)[i_]; } while (0)
#endif

/* z widths: covariates + intercept + 1, padded to 4 (compile-time, so the accumulators stay in
 * registers; a run-time width kept them in memory and ran 10x slower) */
DEFINE_GROUP_SUMS(4)
DEFINE_GROUP_SUMS(8)
DEFINE_GROUP_SUMS(12)
DEFINE_GROUP_SUMS(16)
DEFINE_GROUP_SUMS(24)
DEFINE_GROUP_SUMS(32)
DEFINE_GROUP_SUMS(64)

static void group_sums(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb, const int64_t *ubyte, const uint8_t *ushift,
                       const double *z, Py_ssize_t kw, Py_ssize_t zw, const int64_t *starts, Py_ssize_t ngroups,
                       const int64_t *mstart, const int64_t *members, Py_ssize_t npheno, double *out) {
    switch (zw) {
    case 4: group_sums_4(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    case 8: group_sums_8(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    case 12: group_sums_12(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    case 16: group_sums_16(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    case 24: group_sums_24(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    case 32: group_sums_32(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    default: group_sums_64(raw, m, nb, ubyte, ushift, z, kw, starts, ngroups, mstart, members, npheno, out); break;
    }
}

/* group_sums(raw, nb, ubyte int64, ushift uint8, z float64 (nu x zw), kw, zw, starts int64,
 *            mstart int64, members int64, npheno, out float64 (m x (kw + 1) x npheno)) */
static PyObject *py_group_sums(PyObject *self, PyObject *args) {
    PyObject *oraw, *oub, *ous, *oz, *ost, *oms, *omem, *oout;
    Py_ssize_t nb, kw, zw, npheno;
    if (!PyArg_ParseTuple(args, "OnOOOnnOOOnO", &oraw, &nb, &oub, &ous, &oz, &kw, &zw, &ost, &oms, &omem, &npheno, &oout))
        return NULL;
    if (kw <= 0 || zw < kw || !(zw == 4 || zw == 8 || zw == 12 || zw == 16 || zw == 24 || zw == 32 || zw == 64))
        return PyErr_Format(PyExc_ValueError, "group_sums: need 0 < kw <= zw, zw one of 4 8 12 16 24 32 64");
    Py_buffer b[8];
    const BufArg spec[8] = {{oraw, 0, 1, "raw"},      {oub, 0, 8, "ubyte"},   {ous, 0, 1, "ushift"},
                            {oz, 0, 8, "z"},          {ost, 0, 8, "starts"},  {oms, 0, 8, "mstart"},
                            {omem, 0, 8, "members"},  {oout, 1, 8, "out"}};
    if (get_buffers(spec, b, 8) < 0) return NULL;
    Py_ssize_t m = nb > 0 ? b[0].len / nb : 0;
    Py_ssize_t nu = b[1].len / 8, ngroups = b[4].len / 8 - 1, nmem = b[6].len / 8;
    const int64_t *starts = b[4].buf, *ubyte = b[1].buf, *mstart = b[5].buf, *members = b[6].buf;
    int ok = nb > 0 && b[0].len == m * nb && b[2].len == nu && b[3].len == nu * zw * 8 && ngroups >= 0 &&
             npheno > 0 && b[5].len == b[4].len && b[7].len == m * npheno * (kw + 1) * 8 &&
             (ngroups == 0 || (starts[0] == 0 && starts[ngroups] == nu && mstart[0] == 0 && mstart[ngroups] == nmem));
    for (Py_ssize_t u = 0; ok && u < nu; u++) ok = ubyte[u] >= 0 && ubyte[u] < nb;
    for (Py_ssize_t p = 0; ok && p < ngroups; p++) ok = starts[p] <= starts[p + 1] && mstart[p] <= mstart[p + 1];
    for (Py_ssize_t e = 0; ok && e < nmem; e++) ok = members[e] >= 0 && members[e] < npheno;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "group_sums: inconsistent array sizes or indices");
        return done(b, 8, 1);
    }
    Py_BEGIN_ALLOW_THREADS
    group_sums(b[0].buf, m, nb, ubyte, b[2].buf, b[3].buf, kw, zw, starts, ngroups, mstart, members, npheno, b[7].buf);
    Py_END_ALLOW_THREADS
    return done(b, 8, 0);
}

/*
 * Genotype counts of SNP rows over the samples of a mask: out[j] = [#0 copies of A1 (code 11),
 * #1 copy (10), #2 copies (00), #missing (01)]. mask: the rows' byte layout with 0b11 for each
 * counted sample, zero-padded to whole 64-bit words (nw words); rows are read in 8-byte words
 * with their tail zero-padded. Popcounts on 64-bit words: 32 samples a step.
 */
MULTIVERSION static void code_counts(const uint8_t *raw, Py_ssize_t m, Py_ssize_t nb, const uint64_t *mask,
                                     Py_ssize_t nw, int64_t *out) {
    const uint64_t lo_bits = 0x5555555555555555ULL;
    int64_t n_mask = 0;
    for (Py_ssize_t w = 0; w < nw; w++) n_mask += __builtin_popcountll(mask[w] & lo_bits);
    for (Py_ssize_t j = 0; j < m; j++) {
        const uint8_t *r = raw + j * nb;
        int64_t hom_a2 = 0, lo_n = 0, hi_n = 0;
        for (Py_ssize_t w = 0; w < nw; w++) {
            uint64_t x = 0;
            Py_ssize_t off = 8 * w;
            if (off + 8 <= nb) memcpy(&x, r + off, 8); /* little-endian: byte b of the row = bits 8b.. */
            else memcpy(&x, r + off, (size_t)(nb - off));
            x &= mask[w];
            uint64_t lo = x & lo_bits, hi = (x >> 1) & lo_bits;
            hom_a2 += __builtin_popcountll(lo & hi);
            lo_n += __builtin_popcountll(lo);
            hi_n += __builtin_popcountll(hi);
        }
        int64_t missing = lo_n - hom_a2, het = hi_n - hom_a2;
        out[4 * j] = hom_a2;
        out[4 * j + 1] = het;
        out[4 * j + 2] = n_mask - missing - het - hom_a2;
        out[4 * j + 3] = missing;
    }
}

/* code_counts(raw, nb, mask uint64 words, out int64 (m x 4)) */
static PyObject *py_code_counts(PyObject *self, PyObject *args) {
    PyObject *oraw, *omask, *oout;
    Py_ssize_t nb;
    if (!PyArg_ParseTuple(args, "OnOO", &oraw, &nb, &omask, &oout)) return NULL;
    Py_buffer b[3];
    const BufArg spec[3] = {{oraw, 0, 1, "raw"}, {omask, 0, 8, "mask"}, {oout, 1, 8, "out"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    Py_ssize_t m = nb > 0 ? b[0].len / nb : 0, nw = b[1].len / 8;
    if (nb <= 0 || b[0].len != m * nb || nw != (nb + 7) / 8 || b[2].len != m * 4 * 8) {
        PyErr_SetString(PyExc_ValueError, "code_counts: inconsistent array sizes");
        return done(b, 3, 1);
    }
    Py_BEGIN_ALLOW_THREADS
    code_counts(b[0].buf, m, nb, b[1].buf, nw, b[2].buf);
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

/*
 * Missing genotype calls, sparsely. A missing call decodes to 0, so the dense sums (products,
 * group_sums, code_counts) already leave it out of every sum of g; what changes is the sample set
 * of that SNP: its covariate basis, phenotype sums and N. For each SNP row that has missing calls
 * among S0, the missing samples M are read from the packed bits (code 01 under the S0 mask, 32
 * samples a 64-bit word), and for every phenotype p, over M_p = M minus the samples p excludes:
 *   A  = G_p - sum_{i in M_p} q_i q_i^T      (Gram of the covariate basis Q0 on S_p \ M)
 *   b  = -sum_{i in M_p} q_i yr_ip           (Q0^T yr on S_p \ M; yr is orthogonal to Q0 on S_p)
 *   gg = s2 - u^T A^-1 u,  gy = gy0 - u^T A^-1 b,  yy = yy0 - sum_{i in M_p} yr_ip^2 - b^T A^-1 b,
 *   n  = n_p - |M_p|,
 * with u = Q0^T g on S_p (the caller's, missing calls counted as 0), through one Cholesky
 * factorization of A (k x k). Work: O(|M| (p + k^2) + p k^3) per SNP instead of a dense pass.
 * yr is zero outside S_p, so sums of yr need no membership test; the sums of q q^T over the
 * missing samples that a phenotype excludes are taken out per phenotype through the groups of
 * group_sums (gid: each sample's group or -1, the group's phenotypes members[mstart[g]..]).
 * A factor with a pivot below 1e-10 (the SNP's samples leave the covariates collinear) gives NaN.
 */
static int cholesky_solve2(double *a, Py_ssize_t k, double *v1, double *v2) {
    /* a: k x k symmetric (lower triangle used), overwritten by L; v1, v2 <- L^-1 v1, L^-1 v2 */
    for (Py_ssize_t c = 0; c < k; c++) {
        double d = a[c * k + c];
        for (Py_ssize_t t = 0; t < c; t++) d -= a[c * k + t] * a[c * k + t];
        if (!(d > 1e-10)) return -1;
        d = sqrt(d);
        a[c * k + c] = d;
        for (Py_ssize_t r = c + 1; r < k; r++) {
            double s = a[r * k + c];
            for (Py_ssize_t t = 0; t < c; t++) s -= a[r * k + t] * a[c * k + t];
            a[r * k + c] = s / d;
        }
    }
    for (Py_ssize_t r = 0; r < k; r++) {
        double s1 = v1[r], s2 = v2[r];
        for (Py_ssize_t t = 0; t < r; t++) {
            s1 -= a[r * k + t] * v1[t];
            s2 -= a[r * k + t] * v2[t];
        }
        v1[r] = s1 / a[r * k + r];
        v2[r] = s2 / a[r * k + r];
    }
    return 0;
}

typedef struct {
    const uint8_t *raw;
    Py_ssize_t nb, nw;
    const uint64_t *mask;
    const int64_t *rows;
    Py_ssize_t nrows;
    const double *x; /* row i (a .bed sample): yr (p columns), then Q0 (k columns), ldx apart */
    Py_ssize_t ldx, p, k;
    const int64_t *gid, *mstart, *members;
    const double *gram, *u, *s2, *gy0, *yy0; /* gram p x k x k; u J x p x k; s2, gy0 J x p; yy0 p */
    const int64_t *n0;                       /* p */
    double *gg, *gy, *yy;                    /* J x p */
    int64_t *nobs;                           /* J x p */
} MissingArgs;

static int missing_fix(const MissingArgs *g) {
    const Py_ssize_t p = g->p, k = g->k, kk = k * k;
    /* D (k x k), Dex (p x k x k), b (p x k), dyy (p), a (k x k), v1, v2 (k); dnex, touched (p) */
    double *wk = malloc(sizeof(double) * (kk + p * kk + p * k + p + kk + 2 * k));
    int64_t *dnex = malloc(sizeof(int64_t) * p);
    unsigned char *touched = calloc((size_t)p, 1);
    if (!wk || !dnex || !touched) {
        free(wk); free(dnex); free(touched);
        return -1;
    }
    double *D = wk, *Dex = D + kk, *b = Dex + p * kk, *dyy = b + p * k, *a = dyy + p, *v1 = a + kk, *v2 = v1 + k;
    const uint64_t lo_bits = 0x5555555555555555ULL;
    for (Py_ssize_t jj = 0; jj < g->nrows; jj++) {
        const uint8_t *r = g->raw + g->rows[jj] * g->nb;
        memset(D, 0, sizeof(double) * kk);
        memset(b, 0, sizeof(double) * (p * k + p));
        int64_t dn = 0;
        for (Py_ssize_t w = 0; w < g->nw; w++) {
            uint64_t xw = 0;
            Py_ssize_t off = 8 * w;
            if (off + 8 <= g->nb) memcpy(&xw, r + off, 8);
            else memcpy(&xw, r + off, (size_t)(g->nb - off));
            xw &= g->mask[w];
            uint64_t mb = xw & ~(xw >> 1) & lo_bits; /* code 01 */
            while (mb) {
                const Py_ssize_t i = 32 * w + (__builtin_ctzll(mb) >> 1);
                mb &= mb - 1;
                const double *yi = g->x + i * g->ldx, *q = yi + p;
                dn++;
                for (Py_ssize_t c = 0; c < k; c++)
                    for (Py_ssize_t t = 0; t <= c; t++) D[c * k + t] += q[c] * q[t];
                for (Py_ssize_t ph = 0; ph < p; ph++) {
                    const double y = yi[ph];
                    if (y != 0.0) {
                        dyy[ph] += y * y;
                        for (Py_ssize_t t = 0; t < k; t++) b[ph * k + t] -= y * q[t];
                    }
                }
                const int64_t gr = g->gid[i];
                if (gr >= 0)
                    for (int64_t e = g->mstart[gr]; e < g->mstart[gr + 1]; e++) {
                        const int64_t ph = g->members[e];
                        double *de = Dex + ph * kk;
                        if (!touched[ph]) {
                            touched[ph] = 1;
                            memset(de, 0, sizeof(double) * kk);
                            dnex[ph] = 0;
                        }
                        dnex[ph]++;
                        for (Py_ssize_t c = 0; c < k; c++)
                            for (Py_ssize_t t = 0; t <= c; t++) de[c * k + t] += q[c] * q[t];
                    }
            }
        }
        for (Py_ssize_t ph = 0; ph < p; ph++) {
            const Py_ssize_t o = jj * p + ph;
            const double *gp = g->gram + ph * kk, *de = Dex + ph * kk;
            for (Py_ssize_t c = 0; c < k; c++)
                for (Py_ssize_t t = 0; t <= c; t++)
                    a[c * k + t] = gp[c * k + t] - D[c * k + t] + (touched[ph] ? de[c * k + t] : 0.0);
            memcpy(v1, g->u + o * k, sizeof(double) * k);
            memcpy(v2, b + ph * k, sizeof(double) * k);
            g->nobs[o] = g->n0[ph] - dn + (touched[ph] ? dnex[ph] : 0);
            if (cholesky_solve2(a, k, v1, v2) < 0) {
                g->gg[o] = g->gy[o] = g->yy[o] = NAN;
            } else {
                double s11 = 0, s12 = 0, s22 = 0;
                for (Py_ssize_t t = 0; t < k; t++) {
                    s11 += v1[t] * v1[t];
                    s12 += v1[t] * v2[t];
                    s22 += v2[t] * v2[t];
                }
                g->gg[o] = g->s2[o] - s11;
                g->gy[o] = g->gy0[o] - s12;
                g->yy[o] = g->yy0[ph] - dyy[ph] - s22;
            }
            touched[ph] = 0;
        }
    }
    free(wk); free(dnex); free(touched);
    return 0;
}

/* missing_fix(raw, nb, mask uint64, rows int64 (J), x float64 (rows of ldx), ldx, p, k, gid int64,
 *             mstart int64, members int64, gram (p k k), u (J p k), s2 (J p), gy0 (J p), yy0 (p),
 *             n0 int64 (p), out gg, gy, yy float64 (J p), nobs int64 (J p)) */
static PyObject *py_missing_fix(PyObject *self, PyObject *args) {
    PyObject *o[18];
    Py_ssize_t nb, ldx, p, k;
    if (!PyArg_ParseTuple(args, "OnOOOnnnOOOOOOOOOOOOO", &o[0], &nb, &o[1], &o[2], &o[3], &ldx, &p, &k, &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16]))
        return NULL;
    if (nb <= 0 || p <= 0 || k <= 0 || ldx < p + k)
        return PyErr_Format(PyExc_ValueError, "missing_fix: need nb, p, k > 0 and ldx >= p + k");
    Py_buffer v[17];
    const BufArg spec[17] = {{o[0], 0, 1, "raw"},     {o[1], 0, 8, "mask"},    {o[2], 0, 8, "rows"},   {o[3], 0, 8, "x"},
                             {o[4], 0, 8, "gid"},     {o[5], 0, 8, "mstart"},  {o[6], 0, 8, "members"}, {o[7], 0, 8, "gram"},
                             {o[8], 0, 8, "u"},       {o[9], 0, 8, "s2"},      {o[10], 0, 8, "gy0"},   {o[11], 0, 8, "yy0"},
                             {o[12], 0, 8, "n0"},     {o[13], 1, 8, "gg"},     {o[14], 1, 8, "gy"},    {o[15], 1, 8, "yy"},
                             {o[16], 1, 8, "nobs"}};
    if (get_buffers(spec, v, 17) < 0) return NULL;
    MissingArgs g = {v[0].buf, nb, v[1].len / 8, v[1].buf, v[2].buf, v[2].len / 8, v[3].buf, ldx, p, k,
                     v[4].buf, v[5].buf, v[6].buf, v[7].buf, v[8].buf, v[9].buf, v[10].buf, v[11].buf, v[12].buf,
                     v[13].buf, v[14].buf, v[15].buf, v[16].buf};
    const Py_ssize_t m = v[0].len / nb, J = g.nrows, nx = v[3].len / 8 / ldx, ngroups = v[5].len / 8 - 1,
                     nmem = v[6].len / 8;
    int ok = v[0].len == m * nb && g.nw == (nb + 7) / 8 && nx >= 4 * nb && v[3].len == nx * ldx * 8 &&
             v[4].len / 8 >= 4 * nb && ngroups >= 0 && v[7].len == p * k * k * 8 && v[8].len == J * p * k * 8 &&
             v[11].len == p * 8 && v[12].len == p * 8;
    for (int i = 9; ok && i <= 16; i++)
        if (i != 11 && i != 12) ok = v[i].len == J * p * 8;
    for (Py_ssize_t j = 0; ok && j < J; j++) ok = g.rows[j] >= 0 && g.rows[j] < m;
    for (Py_ssize_t i = 0; ok && i < 4 * nb; i++) ok = g.gid[i] < ngroups;
    for (Py_ssize_t e = 0; ok && e <= ngroups; e++) ok = g.mstart[e] >= 0 && g.mstart[e] <= nmem && (e == 0 || g.mstart[e] >= g.mstart[e - 1]);
    for (Py_ssize_t e = 0; ok && e < nmem; e++) ok = g.members[e] >= 0 && g.members[e] < p;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "missing_fix: inconsistent array sizes or indices");
        return done(v, 17, 1);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = missing_fix(&g);
    Py_END_ALLOW_THREADS
    if (rc < 0) PyErr_NoMemory();
    return done(v, 17, rc < 0);
}

/*
 * prep-geno and the genotype store: .bed rows (SNP-major, 2 bits a call) to the sample-major
 * 2-bit store, a sample subset of .bed rows, and missing calls per sample; all straight from the
 * packed bytes. The store keeps the .bed's codes, so writing it is a transpose of 2-bit
 * elements and nothing else; reading it decodes bytes to int8 through a table.
 *
 * transpose_2bit: for every .bed sample i with smap[i] >= 0, the SNP of row sel[j] of the .bed
 * rows goes to out[smap[i] * ld + byte0 + j / 4], bits 2 (j % 4) (sel: the kept SNPs of a span
 * of rows, read in place instead of gathered first). Blocks of 32 SNPs x 32 samples are 32
 * 64-bit words (a row's 8 bytes each) and are transposed in registers by five rounds of
 * masked swaps (blocks of 16, 8, 4, 2 and 1 elements), four blocks side by side in the lanes
 * of a 256-bit vector. Each sample then gets its 32 SNPs as one 8-byte store; 256 SNPs are
 * done per pass over a sample group, so every sample's 64 output bytes (a cache line) are
 * written together. SNPs beyond the rows (the last byte of the last chunk) are written as 0.
 */
static uint32_t DECODE4[256]; /* byte -> the 4 samples' int8 values, little-endian */
static const int8_t CODE_INT8[4] = {2, -127, 1, 0}; /* .bed code -> count of A1, missing -127 */

static void init_decode4(void) {
    for (int v = 0; v < 256; v++) {
        uint8_t b[4];
        for (int q = 0; q < 4; q++) b[q] = (uint8_t)CODE_INT8[(v >> (2 * q)) & 3];
        memcpy(&DECODE4[v], b, 4);
    }
}

typedef uint64_t v4u __attribute__((vector_size(32)));

/* x[r] element c (2 bits at 2c) becomes x[c] element r, in each 64-bit lane: the off-diagonal
 * blocks of k x k elements are exchanged, k = 16, 8, 4, 2, 1 */
static inline void transpose32x32x2(v4u x[32]) {
    static const uint64_t mask[5] = {0x00000000FFFFFFFFULL, 0x0000FFFF0000FFFFULL, 0x00FF00FF00FF00FFULL,
                                     0x0F0F0F0F0F0F0F0FULL, 0x3333333333333333ULL};
    for (int round = 0, k = 16; round < 5; round++, k >>= 1) {
        const uint64_t mk = mask[round];
        const int sh = 2 * k;
        for (int r = 0; r < 32; r++) {
            if (r & k) continue;
            v4u t = ((x[r] >> sh) ^ x[r + k]) & mk;
            x[r + k] ^= t;
            x[r] ^= t << sh;
        }
    }
}

#define TB 32  /* .bed bytes (128 samples) per block column: four 32-sample lanes */
#define TJ2 256 /* SNPs per pass over a sample group: 64 output bytes per sample */

MULTIVERSION static void transpose_2bit(const uint8_t *raw, const int64_t *sel, Py_ssize_t m, Py_ssize_t nb,
                                        Py_ssize_t n_in, const int64_t *smap, uint8_t *out, Py_ssize_t ld,
                                        Py_ssize_t byte0) {
    v4u x[32];
    for (Py_ssize_t j0 = 0; j0 < m; j0 += TJ2) {
        const Py_ssize_t jn = m - j0 < TJ2 ? m - j0 : TJ2;
        for (Py_ssize_t b0 = 0; b0 < nb; b0 += TB) {
            const Py_ssize_t nbytes = nb - b0 < TB ? nb - b0 : TB;
            for (Py_ssize_t k0 = 0; k0 < jn; k0 += 32) {
                const int rows = jn - k0 < 32 ? (int)(jn - k0) : 32;
                for (int r = 0; r < 32; r++) {
                    const uint8_t *src = r < rows ? raw + sel[j0 + k0 + r] * nb + b0 : NULL;
                    if (src && nbytes == TB) {
                        memcpy(&x[r], src, TB);
                    } else {
                        memset(&x[r], 0, sizeof(v4u));
                        if (src) memcpy(&x[r], src, (size_t)nbytes);
                    }
                }
                transpose32x32x2(x);
                const size_t obytes = (size_t)(rows + 3) / 4;
                uint8_t *dst0 = out + byte0 + (j0 + k0) / 4;
                for (int lane = 0; lane < 4; lane++) {
                    const Py_ssize_t i0 = 4 * b0 + 32 * lane;
                    for (int s = 0; s < 32 && i0 + s < n_in; s++) {
                        const int64_t o = smap[i0 + s];
                        if (o < 0) continue;
                        const uint64_t w = x[s][lane];
                        if (obytes == 8) memcpy(dst0 + o * ld, &w, 8);
                        else memcpy(dst0 + o * ld, &w, obytes);
                    }
                }
            }
        }
    }
}

/* transpose_2bit(raw, nb, sel int64 (m), n_in, smap int64 (n_in), out uint8, ld, byte0) */
static PyObject *py_transpose_2bit(PyObject *self, PyObject *args) {
    PyObject *oraw, *osel, *omap, *oout;
    Py_ssize_t nb, n_in, ld, byte0;
    if (!PyArg_ParseTuple(args, "OnOnOOnn", &oraw, &nb, &osel, &n_in, &omap, &oout, &ld, &byte0)) return NULL;
    Py_buffer b[4];
    const BufArg spec[4] = {{oraw, 0, 1, "raw"}, {osel, 0, 8, "sel"}, {omap, 0, 8, "smap"}, {oout, 1, 1, "out"}};
    if (get_buffers(spec, b, 4) < 0) return NULL;
    const Py_ssize_t nrows = nb > 0 ? b[0].len / nb : 0, m = b[1].len / 8;
    const int64_t *sel = b[1].buf, *smap = b[2].buf;
    Py_ssize_t n_out = ld > 0 ? b[3].len / ld : 0;
    int ok = nb > 0 && b[0].len == nrows * nb && n_in > 0 && n_in <= 4 * nb && b[2].len == n_in * 8 && byte0 >= 0 &&
             byte0 + (m + 3) / 4 <= ld && b[3].len == n_out * ld;
    for (Py_ssize_t j = 0; ok && j < m; j++) ok = sel[j] >= 0 && sel[j] < nrows;
    for (Py_ssize_t i = 0; ok && i < n_in; i++) ok = smap[i] < n_out;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "transpose_2bit: inconsistent array sizes, rows or sample map");
        return done(b, 4, 1);
    }
    Py_BEGIN_ALLOW_THREADS
    transpose_2bit(b[0].buf, sel, m, nb, n_in, smap, b[3].buf, ld, byte0);
    Py_END_ALLOW_THREADS
    return done(b, 4, 0);
}

/*
 * unpack_2bit(src uint8 (n x ld), rows int64 (k), first, out int8 (k x ncols)): out[r, c] =
 * count of A1 (missing -127) of element first + c of row rows[r] of the 2-bit store; whole
 * bytes through the byte -> 4 values table.
 */
static PyObject *py_unpack_2bit(PyObject *self, PyObject *args) {
    PyObject *osrc, *orows, *oout;
    Py_ssize_t ld, first, ncols;
    if (!PyArg_ParseTuple(args, "OnOnOn", &osrc, &ld, &orows, &first, &oout, &ncols)) return NULL;
    Py_buffer b[3];
    const BufArg spec[3] = {{osrc, 0, 1, "src"}, {orows, 0, 8, "rows"}, {oout, 1, 1, "out"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    const Py_ssize_t n = ld > 0 ? b[0].len / ld : 0, k = b[1].len / 8;
    const int64_t *rows = b[1].buf;
    int ok = ld > 0 && b[0].len == n * ld && first >= 0 && ncols >= 0 && (first + ncols + 3) / 4 <= ld &&
             b[2].len == k * ncols;
    for (Py_ssize_t r = 0; ok && r < k; r++) ok = rows[r] >= 0 && rows[r] < n;
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "unpack_2bit: inconsistent array sizes or rows");
        return done(b, 3, 1);
    }
    const uint8_t *src = b[0].buf;
    int8_t *out = b[2].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < k; r++) {
        const uint8_t *p = src + rows[r] * ld + first / 4;
        int8_t *o = out + r * ncols;
        Py_ssize_t c = 0;
        int q = (int)(first & 3);
        for (; q && q < 4 && c < ncols; q++) o[c++] = CODE_INT8[(*p >> (2 * q)) & 3];
        if (q == 4) p++;
        for (; c + 4 <= ncols; c += 4) memcpy(o + c, &DECODE4[*p++], 4);
        for (q = 0; c < ncols; q++) o[c++] = CODE_INT8[(*p >> (2 * q)) & 3];
    }
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

#ifndef _WIN32 /* POSIX pwrite; elsewhere gimtool writes the rows from Python */
/*
 * pwrite_rows(fd, block uint8 (n x w), ld, offset): row i of the block to the file at offset
 * i * ld + offset, one pwrite each (a sample-major store filled SNP chunk by SNP chunk: every
 * person's piece goes to its own place). Here rather than a Python loop: 10,000 people x 30
 * chunks are 300,000 calls. Returns 0, or raises OSError.
 */
static PyObject *py_pwrite_rows(PyObject *self, PyObject *args) {
    PyObject *oblock;
    int fd;
    Py_ssize_t w, ld, offset;
    if (!PyArg_ParseTuple(args, "iOnnn", &fd, &oblock, &w, &ld, &offset)) return NULL;
    Py_buffer b[1];
    const BufArg spec[1] = {{oblock, 0, 1, "block"}};
    if (get_buffers(spec, b, 1) < 0) return NULL;
    const Py_ssize_t n = w > 0 ? b[0].len / w : 0;
    if (w <= 0 || b[0].len != n * w || ld < w || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "pwrite_rows: inconsistent sizes");
        return done(b, 1, 1);
    }
    const uint8_t *src = b[0].buf;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        Py_ssize_t left = w, at = 0;
        while (left > 0) {
            const ssize_t k = pwrite(fd, src + i * w + at, (size_t)left, (off_t)(i * ld + offset + at));
            if (k < 0) {
                if (errno == EINTR) continue;
                err = errno;
                break;
            }
            left -= k;
            at += k;
        }
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return done(b, 1, 1);
    }
    return done(b, 1, 0);
}
#endif

/* 64 bits of a row starting at bit `bit` (bits beyond the row's nb bytes read as 0) */
static inline uint64_t load_bits(const uint8_t *r, Py_ssize_t nb, Py_ssize_t bit) {
    const Py_ssize_t off = bit >> 3;
    const int sh = (int)(bit & 7);
    uint64_t lo = 0;
    if (off + 8 <= nb) memcpy(&lo, r + off, 8);
    else if (off < nb) memcpy(&lo, r + off, (size_t)(nb - off));
    if (sh == 0) return lo;
    const uint64_t hi = off + 8 < nb ? r[off + 8] : 0;
    return (lo >> sh) | (hi << (64 - sh));
}

/*
 * repack(raw, nb, sel int64 (m), runs int64 (R x 2: first source sample, length), n_out, out
 * uint8 (m x ceil(n_out / 4))): the .bed rows sel[j] of raw (picked in place) for a subset of
 * samples, given as runs of consecutive source samples written one after another (a --keep
 * list or the people --mind leaves are a few long runs). Each run is a bit-string copy, 32 samples (64 bits) a step through a 128-bit
 * accumulator; the last byte is padded with 00 as PLINK writes it.
 */
static PyObject *py_repack(PyObject *self, PyObject *args) {
    PyObject *oraw, *osel, *oruns, *oout;
    Py_ssize_t nb, n_out;
    if (!PyArg_ParseTuple(args, "OnOOnO", &oraw, &nb, &osel, &oruns, &n_out, &oout)) return NULL;
    Py_buffer bufs[4];
    const BufArg spec[4] = {{oraw, 0, 1, "raw"}, {osel, 0, 8, "sel"}, {oruns, 0, 8, "runs"}, {oout, 1, 1, "out"}};
    if (get_buffers(spec, bufs, 4) < 0) return NULL;
    Py_ssize_t nrows = nb > 0 ? bufs[0].len / nb : 0, m = bufs[1].len / 8, nruns = bufs[2].len / 16;
    Py_ssize_t nbo = (n_out + 3) / 4, total = 0;
    const int64_t *sel = bufs[1].buf, *runs = bufs[2].buf;
    int ok = nb > 0 && bufs[0].len == nrows * nb && n_out > 0 && bufs[2].len == nruns * 16 && bufs[3].len == m * nbo;
    for (Py_ssize_t j = 0; ok && j < m; j++) ok = sel[j] >= 0 && sel[j] < nrows;
    for (Py_ssize_t k = 0; ok && k < nruns; k++) {
        ok = runs[2 * k] >= 0 && runs[2 * k + 1] > 0 && runs[2 * k] + runs[2 * k + 1] <= 4 * nb;
        total += runs[2 * k + 1];
    }
    if (!ok || total != n_out) {
        PyErr_SetString(PyExc_ValueError, "repack: inconsistent array sizes, rows or sample runs");
        return done(bufs, 4, 1);
    }
    const uint8_t *raw = bufs[0].buf;
    uint8_t *out = bufs[3].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < m; j++) {
        const uint8_t *r = raw + sel[j] * nb;
        uint8_t *o = out + j * nbo, *end = o + nbo;
        unsigned __int128 acc = 0;
        int nbits = 0;
        for (Py_ssize_t k = 0; k < nruns; k++) {
            Py_ssize_t bit = 2 * runs[2 * k], left = 2 * runs[2 * k + 1];
            while (left > 0) {
                const int take = left < 64 ? (int)left : 64;
                uint64_t v = load_bits(r, nb, bit);
                if (take < 64) v &= (1ULL << take) - 1;
                acc |= (unsigned __int128)v << nbits;
                nbits += take;
                if (nbits >= 64) {
                    const uint64_t w = (uint64_t)acc;
                    memcpy(o, &w, 8);
                    o += 8;
                    acc >>= 64;
                    nbits -= 64;
                }
                bit += take;
                left -= take;
            }
        }
        const uint64_t w = (uint64_t)acc;
        memcpy(o, &w, (size_t)(end - o)); /* the rest: (nbits + 7) / 8 bytes, zero-padded */
    }
    Py_END_ALLOW_THREADS
    return done(bufs, 4, 0);
}

/* missing_per_sample(raw, nb, counts int64 (4 nb)): counts[i] += missing calls of sample i over
 * the rows (code 01, found 32 samples a 64-bit word and visited one by one: sparse) */
static PyObject *py_missing_per_sample(PyObject *self, PyObject *args) {
    PyObject *oraw, *ocnt;
    Py_ssize_t nb;
    if (!PyArg_ParseTuple(args, "OnO", &oraw, &nb, &ocnt)) return NULL;
    Py_buffer b[2];
    const BufArg spec[2] = {{oraw, 0, 1, "raw"}, {ocnt, 1, 8, "counts"}};
    if (get_buffers(spec, b, 2) < 0) return NULL;
    Py_ssize_t m = nb > 0 ? b[0].len / nb : 0;
    if (nb <= 0 || b[0].len != m * nb || b[1].len != 4 * nb * 8) {
        PyErr_SetString(PyExc_ValueError, "missing_per_sample: inconsistent array sizes");
        return done(b, 2, 1);
    }
    const uint8_t *raw = b[0].buf;
    int64_t *cnt = b[1].buf;
    const uint64_t lo_bits = 0x5555555555555555ULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < m; j++) {
        const uint8_t *r = raw + j * nb;
        for (Py_ssize_t off = 0; off < nb; off += 8) {
            uint64_t x = 0;
            memcpy(&x, r + off, (size_t)(nb - off < 8 ? nb - off : 8));
            uint64_t mb = x & ~(x >> 1) & lo_bits;
            while (mb) {
                cnt[4 * off + (__builtin_ctzll(mb) >> 1)]++;
                mb &= mb - 1;
            }
        }
    }
    Py_END_ALLOW_THREADS
    return done(b, 2, 0);
}

/*
 * The figures' point layers (gimtool.io.rasterplot): splat adds a marker's log-transmittance
 * kernel around every occupied pixel of a layer (log(1 - coverage), so overlapping
 * anti-aliased markers compose as 'over' does); composite paints a layer's colour into the
 * 8-bit RGB image with coverage 1 - exp(acc). The numpy path does the same with shifted
 * whole-array adds.
 */
/* splat(occ uint8 (h x w), acc float32 (h x w), lk float32 (K x K)): acc[r + dy - K/2, c + dx - K/2]
 * += lk[dy, dx] for every pixel (r, c) with occ set, clipped to the layer */
static PyObject *py_splat(PyObject *self, PyObject *args) {
    PyObject *oocc, *oacc, *olk;
    Py_ssize_t h, w, K;
    if (!PyArg_ParseTuple(args, "OOnnOn", &oocc, &oacc, &h, &w, &olk, &K)) return NULL;
    Py_buffer b[3];
    const BufArg spec[3] = {{oocc, 0, 1, "occ"}, {oacc, 1, 4, "acc"}, {olk, 0, 4, "kernel"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    if (h <= 0 || w <= 0 || K <= 0 || !(K & 1) || b[0].len != h * w || b[1].len != h * w * 4 || b[2].len != K * K * 4) {
        PyErr_SetString(PyExc_ValueError, "splat: inconsistent array sizes (K must be odd)");
        return done(b, 3, 1);
    }
    const uint8_t *occ = b[0].buf;
    float *acc = b[1].buf;
    const float *lk = b[2].buf;
    const Py_ssize_t hk = K / 2;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < h; r++)
        for (Py_ssize_t c = 0; c < w; c++) {
            if (!occ[r * w + c]) continue;
            for (Py_ssize_t dy = 0; dy < K; dy++) {
                const Py_ssize_t rr = r + dy - hk;
                if (rr < 0 || rr >= h) continue;
                for (Py_ssize_t dx = 0; dx < K; dx++) {
                    const Py_ssize_t cc = c + dx - hk;
                    if (cc >= 0 && cc < w) acc[rr * w + cc] += lk[dy * K + dx];
                }
            }
        }
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

/* composite(img uint8 (H x W x 3), W, acc float32 (h x w), h, w, r0, c0, rgb float64 (3)):
 * img[r0 + r, c0 + c] += (1 - exp(acc[r, c])) (rgb - img[...]) where acc < 0, rounded */
static PyObject *py_composite(PyObject *self, PyObject *args) {
    PyObject *oimg, *oacc, *orgb;
    Py_ssize_t W, h, w, r0, c0;
    if (!PyArg_ParseTuple(args, "OnOnnnnO", &oimg, &W, &oacc, &h, &w, &r0, &c0, &orgb)) return NULL;
    Py_buffer b[3];
    const BufArg spec[3] = {{oimg, 1, 1, "img"}, {oacc, 0, 4, "acc"}, {orgb, 0, 8, "rgb"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    Py_ssize_t H = W > 0 ? b[0].len / (3 * W) : 0;
    if (W <= 0 || b[0].len != H * W * 3 || b[1].len != h * w * 4 || b[2].len != 24 || r0 < 0 || c0 < 0 || r0 + h > H ||
        c0 + w > W) {
        PyErr_SetString(PyExc_ValueError, "composite: inconsistent array sizes or offset");
        return done(b, 3, 1);
    }
    uint8_t *img = b[0].buf;
    const float *acc = b[1].buf;
    const double *rgb = b[2].buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < h; r++)
        for (Py_ssize_t c = 0; c < w; c++) {
            const float a = acc[r * w + c];
            if (!(a < 0.0f)) continue;
            const double cov = -expm1((double)a);
            uint8_t *px = img + ((r0 + r) * W + c0 + c) * 3;
            for (int q = 0; q < 3; q++) {
                const double v = px[q] + cov * (rgb[q] - px[q]);
                px[q] = (uint8_t)(v + 0.5);
            }
        }
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

/*
 * Two-sided P of Student's t: P = I_x(nu/2, 1/2), x = nu / (nu + t^2), the regularized incomplete
 * beta function, by its continued fraction (modified Lentz) where that converges fast, and by the
 * symmetry I_x(a, b) = 1 - I_{1-x}(b, a) elsewhere. 1 - x = t^2 / (nu + t^2) is formed directly, so
 * tiny P values keep their relative precision. Checked against scipy.special.betainc in the tests.
 */
static double beta_cf(double a, double b, double x) {
    const double tiny = 1e-300, eps = 1e-13; /* ~1e-12 relative in P (tested); P is written with 7 digits */
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int k = 1; k <= 10000; k++) {
        double m2 = 2.0 * k;
        double num = k * (b - k) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + num * d; if (fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c; if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d; h *= d * c;
        num = -(a + k) * (a + b + k) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + num * d; if (fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c; if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps) break;
    }
    return h;
}

/* ln B(a, 1/2). For large a, lgamma(a) - lgamma(a + 1/2) cancels about log10(a lg a) digits, so
 * the asymptotic series of ln(Gamma(a + 1/2) / Gamma(a)) is used (error below 1e-18 from a = 50). */
static double lbeta_half(double a) {
    if (a < 50.0) return lgamma(a) + lgamma(0.5) - lgamma(a + 0.5);
    double r = 1.0 / a, r2 = r * r;
    double lratio = 0.5 * log(a) - r / 8.0 + r * r2 / 192.0 - r * r2 * r2 / 640.0 + 17.0 * r * r2 * r2 * r2 / 14336.0;
    return 0.5 * log(M_PI) - lratio;
}

/* I_x(a, 1/2), with y = 1 - x given separately (x near 1 keeps its precision through log1p(-y));
 * lbeta = ln B(a, 1/2) */
static double beta_inc_half(double a, double x, double y, double lbeta) {
    const double b = 0.5;
    if (x <= 0.0) return 0.0;
    if (y <= 0.0) return 1.0;
    double lx = y < 0.5 ? log1p(-y) : log(x), ly = x < 0.5 ? log1p(-x) : log(y);
    double front = exp(a * lx + b * ly - lbeta);
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_cf(a, b, x) / a;
    return 1.0 - front * beta_cf(b, a, y) / b;
}

static void t_test_p(const double *t, const double *dof, double *out, Py_ssize_t n) {
    double last_nu = NAN, lbeta = NAN; /* dof repeats (one per phenotype): ln B computed once per run */
    for (Py_ssize_t i = 0; i < n; i++) {
        double nu = dof[i], tt = t[i] * t[i];
        if (!(nu > 0.0) || isnan(tt)) { out[i] = NAN; continue; }
        if (isinf(tt)) { out[i] = 0.0; continue; }
        if (nu != last_nu) { last_nu = nu; lbeta = lbeta_half(0.5 * nu); }
        out[i] = beta_inc_half(0.5 * nu, nu / (nu + tt), tt / (nu + tt), lbeta);
    }
}

/* t_test_p(t float64, dof float64, out float64), all of one length */
static PyObject *py_t_test_p(PyObject *self, PyObject *args) {
    PyObject *ot, *od, *oo;
    if (!PyArg_ParseTuple(args, "OOO", &ot, &od, &oo)) return NULL;
    Py_buffer b[3];
    const BufArg spec[3] = {{ot, 0, 8, "t"}, {od, 0, 8, "dof"}, {oo, 1, 8, "out"}};
    if (get_buffers(spec, b, 3) < 0) return NULL;
    if (b[0].len != b[1].len || b[0].len != b[2].len) {
        PyErr_SetString(PyExc_ValueError, "t_test_p: arrays of different lengths");
        return done(b, 3, 1);
    }
    Py_BEGIN_ALLOW_THREADS
    t_test_p(b[0].buf, b[1].buf, b[2].buf, b[0].len / 8);
    Py_END_ALLOW_THREADS
    return done(b, 3, 0);
}

/* format_rows: in _sumstats_format.c */
PyObject *gimtool_format_rows(PyObject *self, PyObject *args);

static PyMethodDef methods[] = {
    {"products", py_products, METH_VARARGS, "G^T X for packed .bed rows (see the C source)."},
    {"group_sums", py_group_sums, METH_VARARGS, "Sums of g*z and hom-A1 counts over sample groups."},
    {"t_test_p", py_t_test_p, METH_VARARGS, "Two-sided P values of Student's t."},
    {"code_counts", py_code_counts, METH_VARARGS, "Genotype counts of .bed rows over a sample mask."},
    {"transpose_2bit", py_transpose_2bit, METH_VARARGS, "Packed .bed rows to the sample-major 2-bit store."},
    {"unpack_2bit", py_unpack_2bit, METH_VARARGS, "Rows of the 2-bit store as int8 counts of A1."},
    {"repack", py_repack, METH_VARARGS, "The .bed rows of a subset of samples."},
#ifndef _WIN32
    {"pwrite_rows", py_pwrite_rows, METH_VARARGS, "Each row of a block to its own offset of a file."},
#endif
    {"missing_per_sample", py_missing_per_sample, METH_VARARGS, "Missing calls per sample over .bed rows."},
    {"splat", py_splat, METH_VARARGS, "Add a kernel around every occupied pixel of a layer (figures)."},
    {"composite", py_composite, METH_VARARGS, "Paint a layer's colour into an RGB image (figures)."},
    {"missing_fix", py_missing_fix, METH_VARARGS, "Per-SNP sums corrected for missing calls (sparse, see the C source)."},
    {"format_rows", gimtool_format_rows, METH_VARARGS, "TSV rows: text prefixes, then float/int columns."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", "gimtool's compiled kernels (.bed scan, sumstats text).", -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_decode4();
    return PyModule_Create(&module);
}
