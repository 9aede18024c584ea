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

    def plan(self, key) -> tuple[int, list[tuple[int, int, int]], int]:
        """What item `key` = (pair k, item seed or None, SNP spec) reads: its image-store row, the
        start of each view's crop and its augmentation seed (the keyed randomness of the module doc)."""
        k, item_seed, _ = key
        shape = self.stores()[0].shape
        if item_seed is None:
            starts = [tuple((n - c) // 2 for n, c in zip(shape, self.crop))] * self.n_views
            # validation: a fixed augmentation seed per person, so validation losses are repeatable
            aug_seed = int(np.random.default_rng([int(self.pairs.image_index[k]), _AUG]).integers(0, 2**62))
        else:
            rng = np.random.default_rng(item_seed)
            starts = [tuple(int(rng.integers(0, n - c + 1)) for n, c in zip(shape, self.crop)) for _ in range(self.n_views)]
            aug_seed = int(rng.integers(0, 2**62))
        return int(self.pairs.image_index[k]), starts, aug_seed

    def genotypes(self, ks, spec) -> np.ndarray:
        """The genotype rows of pairs `ks` (the batch's SNP subset unless SNPs are masked), (len(ks), m) int8."""
        geno = self.stores()[1]
        rows = np.asarray([int(self.pairs.geno_index[k]) for k in ks], dtype=np.int64)
        idx = None if self.mask_snps else snp_subset(spec, geno.n_snps)
        g = np.asarray(geno.genotypes[rows])
        return np.ascontiguousarray(g if idx is None else g[:, idx])

    def __getitem__(self, key):
        images = self.stores()[0]
        i, starts, aug_seed = self.plan(key)
        views = [torch.from_numpy(np.ascontiguousarray(images.crop(i, s, self.crop)))[None] for s in starts]
        item = {"views": views, "aug_seed": aug_seed}
        if self.with_geno:
            item["geno"] = torch.from_numpy(self.genotypes([key[0]], key[2])[0].copy())
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
            self.add_genotypes(batch, torch.stack([it["geno"] for it in items]), spec)
        return batch

    def add_genotypes(self, batch: dict, geno: torch.Tensor, spec) -> None:
        """The batch's genotypes and the positions of its SNPs (or the mask over all SNPs)."""
        batch["geno"] = geno
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


def make_loader(ds: PairDataset, sampler: KeyedBatches, collate: Collate, workers: int, pin: bool = False,
                threads: int = 2, prefetch: int = 2):
    """The batches of `sampler`: read by threads of this process (`workers` = 0, the default
    and the fast path, see :class:`ThreadedLoader`), or by a DataLoader with `workers`
    processes. Both give the same batches.

    `pin` (training on CUDA): the threaded loader copies each batch's images to the current CUDA
    device as float16 from pinned memory and converts them there. DataLoader workers start from a
    fork server under torch.distributed (forking a process that already runs gloo/NCCL threads
    can deadlock the child) and persist across epochs.
    """
    if workers == 0:
        device = torch.device("cuda", torch.cuda.current_device()) if pin and torch.cuda.is_available() else None
        return ThreadedLoader(ds, sampler, collate, threads=threads, device=device, prefetch=prefetch)
    import torch.distributed as dist

    ctx = "forkserver" if dist.is_available() and dist.is_initialized() else None
    return torch.utils.data.DataLoader(
        _KeyedDataset(ds),
        sampler=sampler,
        batch_size=None,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=True,
        multiprocessing_context=ctx,
    )


class ThreadedLoader:
    """Batches read straight from the memory-mapped stores by threads of this process: no
    worker processes, so no copies between processes (DataLoader workers pickle every crop to
    the main process: 27 crops/s at 1 mm where threads read 200+).

    A background thread plans each batch (the keyed crops of :meth:`PairDataset.plan`) and
    copies its crops with :meth:`ImageStore.crop_batch` (`threads` threads; numpy releases the
    GIL while copying) while the model runs on the previous one; `prefetch` batches wait ready.
    On CUDA (`device`) the crops stay in the stored dtype (float16, or uint8 codes) in a ring of
    pinned buffers, go to the device asynchronously and are converted there; on the CPU they are
    converted to float32 as they are copied. Batches equal the DataLoader path's.
    """

    def __init__(self, ds: PairDataset, sampler, collate: Collate, threads: int = 2, device=None, prefetch: int = 2,
                 keep_dtype: bool = False):
        self.ds, self.sampler, self.collate = ds, sampler, collate
        self.threads, self.device, self.prefetch = max(1, threads), device, max(1, prefetch)
        # keep_dtype without a device: the host half of the CUDA path (benchmarks): images in the
        # stored dtype, in the ring buffers themselves (valid until prefetch + 1 more batches are drawn)
        self.keep_dtype = keep_dtype
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self._ring: list = []  # pinned buffers (CUDA), each with the event of its last copy

    def __len__(self) -> int:
        return len(self.sampler)

    def _buffer(self, slot: int, shape) -> np.ndarray:
        images = self.ds.stores()[0]
        while len(self._ring) <= slot:
            self._ring.append([None, None])
        buf, event = self._ring[slot]
        if event is not None:
            event.synchronize()  # its last batch has reached the device
        if buf is None or buf.shape[1] < shape[1]:
            buf = torch.empty(shape, dtype=getattr(torch, str(images.dtype)), pin_memory=self.cuda)
            self._ring[slot] = [buf, None]
        return buf[:, : shape[1]].numpy()

    def _read(self, keys, slot: int):
        """The batch of `keys` with its images on the host: (host batch, views array)."""
        ds, (images, _) = self.ds, self.ds.stores()
        if not keys:
            return None
        plans = [ds.plan(k) for k in keys]
        rows = [p[0] for p in plans]
        shape = (ds.n_views, len(keys), *ds.crop)
        raw = self.device is not None or self.keep_dtype
        out = self._buffer(slot, shape) if raw else np.empty(shape, dtype=np.float32)
        for v in range(ds.n_views):
            images.crop_batch(rows, [p[1][v] for p in plans], ds.crop, raw=raw, threads=self.threads, out=out[v])
        batch = {"aug_seed": torch.tensor([p[2] for p in plans], dtype=torch.int64)}
        if ds.with_geno:
            self.collate.add_genotypes(batch, torch.from_numpy(ds.genotypes([k[0] for k in keys], keys[0][2])), keys[0][2])
        return batch, out

    def _finish(self, batch: dict, out: np.ndarray, slot: int) -> dict:
        """Images into the batch: (n_views, B, D, H, W) -> per view (B, 1, D, H, W) float32, on
        the device when there is one."""
        t = torch.from_numpy(out)
        if self.device is not None:
            t = t.to(self.device, non_blocking=True)
            if not self.keep_dtype:
                t = self.ds.stores()[0].decode(t)
            if self.cuda:
                event = torch.cuda.Event()
                event.record()
                self._ring[slot][1] = event
            elif t.data_ptr() == out.ctypes.data:
                t = t.clone()  # on the CPU the ring buffer is reused: the batch keeps its own copy
        views = [t[v][:, None] for v in range(t.shape[0])]
        batch["image"] = views[0]
        if self.ds.n_views > 1:
            batch["views"] = views
        return batch

    def __iter__(self):
        import queue
        import threading

        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        nslots = self.prefetch + 2

        def produce():
            try:
                for b, keys in enumerate(self.sampler):
                    if stop.is_set():
                        return
                    q.put((b % nslots, self._read(keys, b % nslots)))
                q.put(None)
            except BaseException as e:  # handed to the consumer
                q.put(e)

        th = threading.Thread(target=produce, daemon=True, name="gimtool-batches")
        th.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                slot, got = item
                yield None if got is None else self._finish(got[0], got[1], slot)
        finally:
            stop.set()
            while th.is_alive():  # let a blocked producer finish
                try:
                    q.get_nowait()
                except queue.Empty:
                    th.join(0.05)
