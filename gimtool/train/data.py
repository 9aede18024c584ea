"""Training data: (MRI volume, genotype row) pairs read from the memory-mapped stores.

Randomness is keyed, not streamed: the crop of the item at position p of epoch e comes from a
generator seeded with (seed, e, p), the SNP subset of global batch b from (seed, e, b), and the
data order of epoch e from (seed, e). So a run gives the same batches whatever the number of
DataLoader workers, a resumed run continues with exactly the batches an uninterrupted run would
have seen, and N DDP processes together see exactly the global batches of one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from gimtool.errors import InputError
from gimtool.io.genostore import GenoStore
from gimtool.io.imagestore import ImageStore
from gimtool.io.tables import align

# salts that keep the generators of different purposes apart
_ORDER, _ITEM, _SNPS, _AUG = 11, 13, 17, 19


@dataclass
class Pairs:
    """Row indices of the people used, in both stores (aligned: image_index[k] is geno_index[k])."""

    ids: pl.DataFrame  # FID IID of the pairs, in image-store order
    image_index: np.ndarray
    geno_index: np.ndarray | None


def pair_samples(images: ImageStore, geno: GenoStore | None, keep: pl.DataFrame | None, what: str, log=None) -> Pairs:
    """People in `keep` (all when None) who have an image and, when `geno` is given, genotypes.

    Logs how many were matched and dropped at each step.
    """
    img_ids = images.samples
    mask = np.ones(img_ids.height, dtype=bool)
    if keep is not None:
        al = align(img_ids, keep)
        mask[:] = False
        mask[al.ref_index] = True
        if log:
            log.info(f"{what}: {keep.height} IDs listed, {al.n_matched} have an image, {keep.height - al.n_matched} dropped (no image)")
    image_index = np.flatnonzero(mask)
    geno_index = None
    if geno is not None:
        sub = img_ids[image_index]
        al = align(sub, geno.samples)
        order = np.argsort(al.ref_index, kind="stable")
        dropped = image_index.size - al.n_matched
        image_index = image_index[al.ref_index[order]]
        geno_index = al.table_index[order].astype(np.int64)
        if log:
            log.info(f"{what}: {al.n_matched} people have an image and genotypes, {dropped} dropped (no genotypes)")
    elif log:
        log.info(f"{what}: {image_index.size} people with an image")
    return Pairs(img_ids[image_index], image_index.astype(np.int64), geno_index)


def augment_length(n_snps: int, fraction: float) -> int:
    return max(1, min(n_snps, int(round(n_snps * fraction))))


def snp_subset(spec: tuple, n_snps: int) -> np.ndarray | None:
    """Indices of the SNPs a batch uses (sorted), or None for all of them."""
    kind = spec[0]
    if kind == "all":
        return None
    if kind == "crop":
        _, start, length = spec
        return np.arange(start, start + length, dtype=np.int64)
    if kind == "even":
        _, offset, length = spec
        stride = n_snps / length
        return np.minimum(np.floor(offset + np.arange(length) * stride).astype(np.int64), n_snps - 1)
    raise ValueError(f"unknown SNP subset {spec!r}")


def draw_snp_spec(rng: np.random.Generator, n_snps: int, crop_p: float, fraction: float) -> tuple:
    """The genetic augmentation: with p = crop_p a random contiguous crop, otherwise an even
    down-sampling with a random phase; both keep round(fraction * n_snps) SNPs."""
    length = augment_length(n_snps, fraction)
    if rng.random() < crop_p:
        return ("crop", int(rng.integers(0, n_snps - length + 1)), length)
    return ("even", float(rng.random() * (n_snps / length)), length)


class PairDataset(torch.utils.data.Dataset):
    """Items are keyed by (pair k, item seed or None for the centre crop, SNP spec).

    The stores are opened lazily in each process, so DataLoader workers map the files
    themselves instead of receiving pickled copies of the arrays.
    """

    def __init__(self, image_path, geno_path, pairs: Pairs, crop: tuple[int, int, int], n_views: int, with_geno: bool,
                 mask_snps: bool = False):
        self.image_path, self.geno_path = str(image_path), (None if geno_path is None else str(geno_path))
        # a fixed-array genetic encoder (the MLP) takes every SNP; its augmentation is a mask
        self.mask_snps = mask_snps
        self.pairs = pairs
        self.crop = tuple(int(c) for c in crop)
        self.n_views = n_views
        self.with_geno = with_geno and geno_path is not None
        self._stores = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_stores"] = None
        return d

    def stores(self):
        if self._stores is None:
            self._stores = (ImageStore(self.image_path), GenoStore(self.geno_path) if self.geno_path else None)
        return self._stores

    def __len__(self) -> int:
        return int(self.pairs.image_index.size)

    def __getitem__(self, key):
        k, item_seed, spec = key
        images, geno = self.stores()
        i = int(self.pairs.image_index[k])
        shape = images.shape
        if item_seed is None:
            starts = [tuple((n - c) // 2 for n, c in zip(shape, self.crop))] * self.n_views
            # validation: a fixed augmentation seed per person, so validation losses are repeatable
            aug_seed = int(np.random.default_rng([int(self.pairs.image_index[k]), _AUG]).integers(0, 2**62))
        else:
            rng = np.random.default_rng(item_seed)
            starts = [tuple(int(rng.integers(0, n - c + 1)) for n, c in zip(shape, self.crop)) for _ in range(self.n_views)]
            aug_seed = int(rng.integers(0, 2**62))
        views = [torch.from_numpy(np.ascontiguousarray(images.crop(i, s, self.crop)))[None] for s in starts]
        item = {"views": views, "aug_seed": aug_seed}
        if self.with_geno:
            row = geno.genotypes[int(self.pairs.geno_index[k])]
            idx = None if self.mask_snps else snp_subset(spec, geno.n_snps)
            g = np.asarray(row) if idx is None else np.asarray(row[idx])
            item["geno"] = torch.from_numpy(g.copy())
        return item


class Collate:
    """Stacks items into the batch dict the methods' losses take (see gimtool.model.methods)."""

    def __init__(self, positions: dict[str, np.ndarray] | None, n_views: int, mask_snps: bool = False):
        self.positions = positions
        self.n_views = n_views
        self.mask_snps = mask_snps  # augmentation as batch['snp_mask'] over all SNPs, not a subset

    def __call__(self, items_and_spec):
        items, spec = items_and_spec
        if not items:  # this rank's share of a small validation batch
            return None
        views = [torch.stack([it["views"][v] for it in items]) for v in range(self.n_views)]
        batch = {"image": views[0], "aug_seed": torch.tensor([it["aug_seed"] for it in items], dtype=torch.int64)}
        if self.n_views > 1:
            batch["views"] = views
        if "geno" in items[0]:
            batch["geno"] = torch.stack([it["geno"] for it in items])
            idx = snp_subset(spec, self.positions["chrom"].size)
            if self.mask_snps and idx is not None:
                mask = np.zeros(self.positions["chrom"].size, dtype=bool)
                mask[idx] = True
                batch["snp_mask"] = torch.from_numpy(mask)
                idx = None
            for name, dtype in (("chrom", torch.int64), ("bp", torch.int64), ("cm", torch.float32), ("af", torch.float32)):
                if name not in self.positions:
                    continue
                a = self.positions[name] if idx is None else self.positions[name][idx]
                batch[name] = torch.as_tensor(np.ascontiguousarray(a)).to(dtype)
        return batch


class KeyedBatches:
    """Batch sampler: the global batches of an epoch, this rank's share of each.

    Training (`shuffle`): a permutation keyed by (seed, epoch), incomplete last batch dropped,
    each global batch split into `world` equal contiguous shares. Validation: fixed order,
    every person once, batches split as evenly as possible (a rank's share may be empty).
    Plays the role of DistributedSampler, but with keyed randomness (see the module doc).
    """

    def __init__(self, n: int, batch_size: int, seed: int, train: bool, rank: int = 0, world: int = 1,
                 augment: bool = False, n_snps: int = 0, crop_p: float = 0.2, fraction: float = 0.1):
        self.n, self.batch_size, self.seed, self.train = n, batch_size, seed, train
        self.rank, self.world = rank, world
        self.augment, self.n_snps, self.crop_p, self.fraction = augment, n_snps, crop_p, fraction
        self.epoch = 0
        if train and batch_size % world:
            raise InputError(f"--batch-size {batch_size}: must be a multiple of the number of processes ({world})")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.train else math.ceil(self.n / self.batch_size)

    def __iter__(self):
        e, B = self.epoch, self.batch_size
        order = np.random.default_rng([self.seed, e, _ORDER]).permutation(self.n) if self.train else np.arange(self.n)
        for b in range(len(self)):
            pos = np.arange(b * B, min((b + 1) * B, self.n))
            if self.train:
                share = B // self.world
                pos = pos[self.rank * share:(self.rank + 1) * share]
            else:
                pos = np.array_split(pos, self.world)[self.rank]
            spec = ("all",)
            if self.augment and self.n_snps:
                spec = draw_snp_spec(np.random.default_rng([self.seed, e, b, _SNPS]), self.n_snps, self.crop_p, self.fraction)
            keys = [(int(order[p]), [self.seed, e, int(p), _ITEM] if self.train else None, spec) for p in pos]
            yield keys


class _KeyedDataset(torch.utils.data.Dataset):
    """Adapter: the DataLoader hands a whole key list to one fetch, so the batch's SNP spec
    travels with it to the collate function."""

    def __init__(self, ds: PairDataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, keys):
        return [self.ds[k] for k in keys], (keys[0][2] if keys else ("all",))


def make_loader(ds: PairDataset, sampler: KeyedBatches, collate: Collate, workers: int, pin: bool = False):
    """A DataLoader over keyed batches (each element of `sampler` is one batch's key list).

    Under torch.distributed the workers start from a fork server: forking a process that already
    runs gloo/NCCL threads can deadlock the child. Workers persist across epochs (the keyed
    sampler runs in the main process, so persistence changes no batch).
    """
    import torch.distributed as dist

    ctx = "forkserver" if workers and dist.is_available() and dist.is_initialized() else None
    return torch.utils.data.DataLoader(
        _KeyedDataset(ds),
        sampler=sampler,
        batch_size=None,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        multiprocessing_context=ctx,
    )
