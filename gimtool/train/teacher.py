"""Fitting gim's voxel teacher (model.teacher) from a run's stores, before training.

The image side is the top teacher_pcs principal components of the training people's whole
volumes, averaged over blocks of about teacher_voxel_mm (8 mm: 2 x 2 x 2 voxels at 4 mm, 8^3 at
1 mm, so that a 1 mm cohort costs the same PCA as an 8 mm one). The PCA is exact, on the Gram
matrix of at most teacher_max_people training people drawn by the run seed; every training and
validation person is then projected onto it in blocks, so memory stays at the PCA people's
downsampled volumes. Validation people are used only to log the teacher critic's held-out MI.
Every process fits the same teacher on the CPU; under DDP rank 0's is broadcast, so that every
process trains on bit-identical targets.
"""

from __future__ import annotations

import numpy as np
import torch

from gimtool.model.teacher import fit_teacher
from gimtool.progress import bar as progress_bar


def pool_factor(voxel_size, mm: float) -> tuple[int, int, int]:
    """Voxels per block along each axis: about `mm` millimetres, at least 1."""
    return tuple(max(1, int(round(mm / float(v)))) for v in voxel_size)


def downsample(vol: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Block means of (D, H, W) over factor-sized blocks (edges padded with the volume's edge
    blocks' own voxels only: a partial block is the mean of the voxels it has)."""
    if factor == (1, 1, 1):
        return np.asarray(vol, dtype=np.float32)
    t = torch.as_tensor(np.asarray(vol, dtype=np.float32))[None, None]
    pooled = torch.nn.functional.avg_pool3d(t, factor, stride=factor, ceil_mode=True, count_include_pad=False)
    return pooled[0, 0].numpy()


def _volumes(images, rows: np.ndarray, factor, desc: str, progress: bool) -> np.ndarray:
    out = None
    with progress_bar(total=len(rows), desc=desc, unit="volume", enabled=progress) as bar:
        for k, i in enumerate(rows):
            v = downsample(images.volume(int(i)), factor).ravel()
            if out is None:
                out = np.empty((len(rows), v.size), dtype=np.float32)
            out[k] = v
            bar.update(1)
    return out


def voxel_pcs(images, train_rows: np.ndarray, other_rows: list[np.ndarray], n_pcs: int, mm: float,
              max_people: int, seed: int, progress: bool = False, log=None) -> list[np.ndarray]:
    """Scores (float32) on the top n_pcs PCs of the downsampled volumes of image-store rows
    `train_rows` (the PCA on at most max_people of them), for train_rows then each of other_rows."""
    factor = pool_factor(images.voxel_size, mm)
    n = len(train_rows)
    pick = np.sort(np.random.default_rng([seed, 43]).choice(n, min(n, max_people), replace=False))
    X = _volumes(images, train_rows[pick], factor, "teacher PCA", progress).astype(np.float64)
    mu = X.mean(0)
    X -= mu
    total = float((X * X).sum())
    lam, U = np.linalg.eigh(X @ X.T)
    k = int(min(n_pcs, len(pick) - 1, int((lam > lam[-1] * 1e-10).sum())))
    lam, U = lam[::-1][:k], U[:, ::-1][:, :k]
    comps = (X.T @ U) / np.sqrt(lam)  # (V, k) unit right singular vectors
    if log is not None:
        log.info(f"teacher: top {k} PCs of {len(pick)} training people's volumes at {factor[0]}x{factor[1]}x{factor[2]} "
                 f"voxel blocks ({X.shape[1]:,} values each); they explain {lam.sum() / max(total, 1e-300):.1%} of the variance")
    del X
    out = []
    for rows in [train_rows, *other_rows]:
        scores = np.empty((len(rows), k), dtype=np.float32)
        for s in range(0, len(rows), 256):
            block = _volumes(images, rows[s:s + 256], factor, "teacher scores", False).astype(np.float64)
            scores[s:s + 256] = (block - mu) @ comps
        out.append(scores)
    return out


def fit_run_teacher(teacher, cfg, data, seed: int, dist, log=None, progress: bool = False) -> None:
    """Fit `teacher` (model.teacher.GeneticTeacher) on the run's training people (RunData `data`)."""
    from gimtool.io.genostore import GenoStore
    from gimtool.io.imagestore import ImageStore

    m = cfg.model
    images, geno = ImageStore(data.image_path), GenoStore(data.geno_path)
    val = data.val
    val_rows = [] if val is None else [val.image_index[:1000]]
    pcs = voxel_pcs(images, data.train.image_index, val_rows, m.teacher_pcs, m.teacher_voxel_mm,
                    m.teacher_max_people, seed, progress, log)
    gi = data.train.geno_index

    def rows(k):
        return torch.from_numpy(geno.rows(gi[np.asarray(k)]))

    af = torch.as_tensor(data.positions["af"], dtype=torch.float32)
    x_val = g_val = None
    if val is not None:
        x_val, g_val = torch.from_numpy(pcs[1]), torch.from_numpy(geno.rows(val.geno_index[:1000]))
    fit_teacher(teacher, m, torch.from_numpy(pcs[0]), rows, af, seed, x_val, g_val, log=log)
    if dist.enabled:
        import torch.distributed as tdist

        for b in teacher.buffers():
            tdist.broadcast(b, 0)
    if log is not None and bool(teacher.active):
        log.info(f"teacher: {teacher.weight.shape[0]} SNPs, {teacher.dim} scores; gim adds "
                 f"{m.teacher_weight:g} x their MSE from a linear head of z to its loss")
