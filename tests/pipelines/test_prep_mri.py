"""prep-mri: the real MNI152 template (nilearn, 197x233x189, 1 mm) written in other orientations,
voxel sizes and types lands on the same MNI grid; FLIRT matrices in FSL's convention; bad scans
end in failed.tsv; --resume; the store reader. Coarse grids (4 mm, 2 mm) keep it fast."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_
from scipy import ndimage

from gimtool.imaging.geometry import flirt_voxel_map, fsl_mni152_reference, fsl_scaled_voxel, world_voxel_map
from gimtool.imaging.normalize import from_uint8, to_uint8, zscore
from gimtool.imaging.qc import centre_of_mass, cohort_qc
from gimtool.imaging.resample import resample
from gimtool.imaging.grids import mni_grid
from gimtool.io.imagestore import ImageStore, StoreWriter
from tests.conftest import gimtool


# -- helpers -------------------------------------------------------------------------------------

def gimtool_inproc(*args) -> int:
    """Run the CLI in this process (saves the interpreter start-up of `gimtool(...)`); returns the exit code."""
    from gimtool.cli import main

    return main([str(a) for a in args])


def reorient(data: np.ndarray, affine: np.ndarray, perm=(0, 1, 2), flips=()) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored in another voxel order: axes permuted by `perm`, then `flips` reversed.

    Returns (data, affine) such that every voxel keeps its world position.
    """
    d = np.transpose(data, perm)
    t = np.zeros((4, 4))
    t[3, 3] = 1
    for new, old in enumerate(perm):  # new voxel index j -> old index along axis perm[j]
        t[old, new] = 1
    for ax in flips:
        n = d.shape[ax]
        d = np.flip(d, axis=ax)
        f = np.eye(4)
        f[ax, ax] = -1
        f[ax, 3] = n - 1
        t = t @ f
    return np.ascontiguousarray(d), affine @ t


def corr(a, b, mask=None):
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    if mask is not None:
        a, b = a[mask.ravel()], b[mask.ravel()]
    return float(np.corrcoef(a, b)[0, 1])


def support_com_mm(volume, affine):
    v = np.asarray(volume)
    return centre_of_mass((v != v.flat[0]).astype(float), affine)  # corner voxel = background


@pytest.fixture(scope="module")
def template():
    """The nilearn MNI152 2009a T1 template, skull-stripped, 1 mm, as (float32 data x1000, affine)."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    assert img.shape == (197, 233, 189)
    return img.get_fdata(dtype=np.float32) * 1000, img.affine.copy()


@pytest.fixture(scope="module")
def variants(template, tmp_path_factory):
    """The template written in several orientations, voxel sizes and types; returns (dir, {IID: path})."""
    d = tmp_path_factory.mktemp("variants")
    a, aff = template
    out = {}

    def save(name, data, affine, dtype=None, slope=None, inter=None):
        img = nib.Nifti1Image(data, affine)
        if dtype is not None:
            img.set_data_dtype(dtype)
        if slope is not None:
            img.header.set_slope_inter(slope, inter)
        p = d / f"{name}.nii.gz"
        nib.save(img, p)
        out[name] = p

    save("ras", a, aff)
    save("las", *reorient(a, aff, flips=(0,)))
    save("lps", *reorient(a, aff, flips=(0, 1)))
    save("pir", *reorient(a, aff, perm=(1, 2, 0), flips=(0, 1)))  # axes y, z, x: P-I-R storage
    save("sal", *reorient(a, aff, perm=(2, 1, 0), flips=(2,)))
    # 2 mm: block means of 2x2x2 voxels; each block's centre is the mean of its voxel centres
    c = a[:196, :232, :188].reshape(98, 2, 116, 2, 94, 2).mean(axis=(1, 3, 5))
    save("vox2", c, aff @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1.0]]))
    # 1 x 1 x 1.5 mm: trilinear resampling along z (slice k sits at old z index 1.5 k)
    nz = int((a.shape[2] - 1) / 1.5) + 1
    z15 = ndimage.affine_transform(a, np.diag([1, 1, 1.5]), output_shape=(a.shape[0], a.shape[1], nz), order=1)
    save("vox1x1x1.5", z15, aff @ np.diag([1, 1, 1.5, 1]))
    # int16 codes with scl_slope 0.5 and scl_inter -5: background code 10 reads as 0
    codes = np.rint(a / 0.5).astype(np.int16) + 10
    save("int16scaled", codes, aff, dtype=np.int16, slope=0.5, inter=-5.0)
    save("vol4d", a[..., None], aff)
    save("uint8native", np.rint(a / 1000 * 255).astype(np.uint8), aff, dtype=np.uint8)
    return d, out


# -- kernels --------------------------------------------------------------------------------------

def test_fsl_reference_grid_is_fsl_header_and_matches_ras_grid():
    shape, aff, zooms = fsl_mni152_reference(1.0)
    assert shape == (182, 218, 182) and zooms == (1.0, 1.0, 1.0)
    # FSL's MNI152_T1_1mm.nii.gz sform
    np.testing.assert_array_equal(aff, [[-1, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    rshape, ras = mni_grid(1.0)
    assert rshape == shape
    # RAS voxel i sits where FSL voxel 181 - i sits
    for i, j, k in [(0, 0, 0), (181, 217, 181), (37, 100, 5)]:
        np.testing.assert_allclose(ras @ [i, j, k, 1], aff @ [181 - i, j, k, 1])
    shape2, aff2, _ = fsl_mni152_reference(2.0)
    assert shape2 == (91, 109, 91)
    np.testing.assert_array_equal(aff2[:3], [[-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72]])
    assert mni_grid(4.0)[0] == (46, 55, 46)


def test_resample_matches_slow_trilinear_reference():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(7, 8, 9)).astype(np.float32)
    m = np.array([[0.9, 0.1, 0.0, 0.3], [-0.1, 1.1, 0.05, 0.7], [0.02, 0.0, 0.8, 1.1], [0, 0, 0, 1]])
    out = resample(src, m, (6, 7, 8), order=1, antialias=False)

    def tri(p):
        lo = np.floor(p).astype(int)
        f = p - lo
        v = 0.0
        for corner in np.ndindex(2, 2, 2):
            idx = lo + corner
            w = np.prod([f[d] if corner[d] else 1 - f[d] for d in range(3)])
            if np.all(idx >= 0) and np.all(idx < src.shape):
                v += w * src[tuple(idx)]
        return v

    for t in [(0, 0, 0), (3, 4, 5), (5, 6, 7), (2, 1, 6)]:
        p = m[:3, :3] @ np.array(t, float) + m[:3, 3]
        assert out[t] == pytest.approx(tri(p), abs=1e-5), t


@pytest.mark.parametrize("order", [0, 1])
def test_axis_aligned_fast_path_matches_scipy(order):
    # (no coordinate falls exactly half-way between voxels, where nearest-neighbour rounding may differ)
    rng = np.random.default_rng(2)
    src = rng.normal(size=(17, 18, 19)).astype(np.float32)
    for m in (np.diag([1.5, -0.7, 1.2, 1.0]) + np.array([[0, 0, 0, 0.3], [0, 0, 0, 15.13], [0, 0, 0, 0.2], [0, 0, 0, 0]]),
              np.diag([2.0, 2, 2, 1]) + np.array([[0, 0, 0, -3.4], [0, 0, 0, 0.6], [0, 0, 0, -1], [0, 0, 0, 0]]),
              np.array([[0, 0, -1.0, 16], [1.0, 0, 0, -2], [0, 1.0, 0, 3], [0, 0, 0, 1]])):
        fast = resample(src, m, (12, 13, 14), order=order, antialias=False)
        slow = ndimage.affine_transform(src, m[:3, :3], offset=m[:3, 3], output_shape=(12, 13, 14), order=order, mode="grid-constant")
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_permuted_small_volume_resamples_identically():
    # unequal sides so that a swapped axis cannot pass
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 2, size=(7, 8, 9)).astype(np.float32)
    aff = np.array([[1.5, 0, 0, -4], [0, 2.0, 0, 3], [0, 0, 2.5, 1], [0, 0, 0, 1]])
    target = np.array([[1.0, 0, 0, -3], [0, 1.0, 0, 4], [0, 0, 1.0, 2], [0, 0, 0, 1]])
    ref = resample(a, world_voxel_map(aff, target), (8, 10, 12), antialias=False)
    for perm, flips in [((0, 1, 2), (0,)), ((2, 0, 1), (1, 2)), ((1, 2, 0), (0, 1, 2))]:
        b, baff = reorient(a, aff, perm, flips)
        got = resample(b, world_voxel_map(baff, target), (8, 10, 12), antialias=False)
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cohort_qc_flags_the_odd_volume_and_matches_numpy():
    rng = np.random.default_rng(3)
    base = np.zeros((7, 8, 9), np.float32)
    base[2:5, 2:6, 2:7] = rng.normal(size=(3, 4, 5))
    vols = np.stack([base + 0.1 * rng.normal(size=base.shape).astype(np.float32) * (base != 0) for _ in range(5)])
    vols[3][base != 0] = rng.normal(size=int((base != 0).sum()))  # a scan unlike the others
    vols = vols.astype(np.float16)
    mean, corr, flags, worst = cohort_qc(vols, threshold=0.8, n_worst=2)
    np.testing.assert_allclose(mean, vols.astype(np.float64).mean(axis=0), atol=1e-5)
    m = np.abs(mean - mean[0, 0, 0]) > 1e-3
    for i in range(5):
        assert corr[i] == pytest.approx(np.corrcoef(vols[i].astype(float)[m], mean[m])[0, 1], abs=1e-6)
    assert flags.tolist() == [False, False, False, True, False] and worst[0] == 3
    # a volume constant over the mask has no correlation (NaN), and is flagged
    flat = np.concatenate([vols, np.full((1, *base.shape), 0.7, np.float16)])
    _, corr2, flags2, _ = cohort_qc(flat, threshold=0.8, mask=m, n_worst=1)
    assert np.isnan(corr2[5]) and flags2[5] and np.allclose(corr2[:5], corr, atol=1e-6)


def test_zscore_clips_then_standardises_inside_the_mask():
    rng = np.random.default_rng(4)
    v = np.zeros((7, 8, 9), np.float32)
    m = np.zeros(v.shape, bool)
    m[1:6, 2:7, 1:8] = True
    v[m] = rng.normal(100, 10, size=int(m.sum()))
    v[3, 4, 4] = 1e6  # a hot voxel must not set the scale
    z, stats = zscore(v, m, clip=(1, 99))
    vals = v[m]
    lo, hi = np.percentile(vals, [1, 99])
    c = np.clip(vals, lo, hi)
    np.testing.assert_allclose(z[m], (c - c.mean()) / c.std(), rtol=1e-5, atol=1e-5)
    assert np.all(z[~m] == np.float32((lo - c.mean()) / c.std()))
    assert stats["BRAIN_VOXELS"] == int(m.sum()) and stats["RAW_P99"] == pytest.approx(np.percentile(vals, 99))
    codes = to_uint8(z)
    assert np.abs(from_uint8(codes) - np.clip(z, -4, 3.97)).max() <= 1 / 64 + 1e-6
    with pytest.raises(ValueError, match="empty"):
        zscore(v, np.zeros(v.shape, bool))


@settings(max_examples=30, deadline=None)
@given(perm=st_.permutations([0, 1, 2]), flips=st_.sets(st_.integers(0, 2)), order=st_.sampled_from([1, 3]),
       zooms=st_.tuples(*[st_.floats(0.8, 2.5)] * 3), shift=st_.tuples(*[st_.floats(-3, 3)] * 3))
def test_storage_order_never_changes_the_result(perm, flips, order, zooms, shift):
    # property: any permutation/flip of the stored axes (with the matching affine) resamples to
    # the same target volume, for any voxel size and origin
    rng = np.random.default_rng(5)
    a = rng.uniform(1, 2, size=(7, 8, 9)).astype(np.float32)
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = shift
    target = np.array([[1.1, 0, 0, 0.5], [0, 0.9, 0, 1.5], [0, 0, 1.3, 2.0], [0, 0, 0, 1]])
    ref = resample(a, world_voxel_map(aff, target), (6, 7, 8), order=order, antialias=False)
    b, baff = reorient(a, aff, tuple(perm), tuple(flips))
    got = resample(b, world_voxel_map(baff, target), (6, 7, 8), order=order, antialias=False)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_fsl_scaled_voxel_flips_x_for_neurological_storage():
    ras = np.diag([2.0, 3.0, 4.0, 1.0])
    s = fsl_scaled_voxel(ras, (10, 11, 12), (2.0, 3.0, 4.0))
    np.testing.assert_allclose(s @ [0, 0, 0, 1], [18, 0, 0, 1])  # (nx-1-i)*dx
    np.testing.assert_allclose(s @ [9, 1, 1, 1], [0, 3, 4, 1])
    las = np.diag([-2.0, 3.0, 4.0, 1.0])
    np.testing.assert_allclose(fsl_scaled_voxel(las, (10, 11, 12), (2.0, 3.0, 4.0)), np.diag([2.0, 3, 4, 1]))


def test_identity_flirt_matrix_between_opposite_storage_orders():
    # FSL coordinates are radiological whatever the storage: a RAS image and the FSL (LAS) grid
    # holding the same voxels are related by the identity FLIRT matrix
    rshape, raff, rz = fsl_mni152_reference(2.0)
    shape, ras = mni_grid(2.0)
    m = flirt_voxel_map(np.eye(4), ras, shape, (2.0, 2.0, 2.0), raff, rshape, rz, target_affine=ras)
    np.testing.assert_allclose(m, np.eye(4), atol=1e-12)


# -- orientations, voxel sizes, types -------------------------------------------------------------

@pytest.fixture(scope="module")
def store4(variants, tmp_path_factory):
    d, paths = variants
    lst = d / "images.tsv"
    lst.write_text("FID\tIID\tPATH\n" + "".join(f"fam\t{k}\t{p.name}\n" for k, p in paths.items()))
    out = tmp_path_factory.mktemp("out") / "v4"
    gimtool("prep-mri", "--images", lst, "--voxel", "4", "--threads", "2", "--out", out)
    return ImageStore(out)


def test_every_variant_lands_on_the_same_grid(store4, template):
    st = store4
    shape, aff = mni_grid(4.0)
    assert st.shape == shape and np.allclose(st.affine, aff) and st.voxel_size == (4.0, 4.0, 4.0)
    ids = st.manifest["IID"].to_list()
    ref = st.volume(ids.index("ras"))
    a, taff = template
    com_true = support_com_mm(a, taff)
    np.testing.assert_allclose(support_com_mm(ref, st.affine), com_true, atol=4.0)
    for name in ids:
        v = st.volume(ids.index(name))
        r = corr(v, ref)
        assert r >= 0.99, (name, r)
        com = support_com_mm(v, st.affine)
        assert np.all(np.abs(com - com_true) <= 4.0), (name, com, com_true)


def test_store_values_are_zscores_in_brain(store4):
    st = store4
    v = st.volume(0)
    bg = v[0, 0, 0]
    assert np.all(v >= bg - 1e-3)  # background = the low clipping point, the darkest value
    brain = v > bg + 1e-3  # the mask minus its voxels at the low clipping point (0.5 %)
    man = st.manifest
    assert 0.99 * man["BRAIN_VOXELS"][0] <= brain.sum() <= man["BRAIN_VOXELS"][0]
    assert 0.15 < brain.mean() < 0.35
    assert abs(v[brain].mean()) < 0.05 and abs(v[brain].std() - 1) < 0.05
    assert man["QC_OUTLIER"].sum() == 0 and man["CORR_MEAN"].min() > 0.99
    assert (man["FOV_COVERAGE"] == 1.0).all()
    assert set(["RAW_MEAN", "RAW_SD", "RAW_P01", "RAW_P99", "BRAIN_VOXELS", "CORR_MEAN"]) <= set(man.columns)
    # the int16 image's intensities come back through scl_slope/scl_inter
    raw = dict(zip(man["IID"], man["RAW_MEAN"]))
    assert raw["int16scaled"] == pytest.approx(raw["ras"], rel=2e-3)
    assert (st.path / "qc.png").stat().st_size > 1000
    assert pl.read_csv(st.path / "failed.tsv", separator="\t").height == 0


def test_ras_template_at_2mm_matches_direct_world_resampling(template, variants, tmp_path):
    d, paths = variants
    out = tmp_path / "v2"
    gimtool("prep-mri", "--dir", d, "--pattern", "{IID}.nii.gz", "--voxel", "2", "--out", out,
            "--write-nifti", "--dtype", "uint8", "--qc-threshold", "0.5")
    st = ImageStore(out)
    assert st.shape == (91, 109, 91) and st.dtype == np.uint8
    ids = st.manifest["IID"].to_list()
    assert set(ids) == set(paths)
    a, taff = template
    shape, aff = mni_grid(2.0)
    # independent placement: scipy map of each target voxel centre to template voxels
    direct = ndimage.affine_transform(a, (np.linalg.inv(taff) @ aff)[:3, :3], offset=(np.linalg.inv(taff) @ aff)[:3, 3],
                                      output_shape=shape, order=1)
    for name in ("ras", "pir", "vox2", "vox1x1x1.5"):
        assert corr(st.volume(ids.index(name)), direct) > 0.99, name
    # --write-nifti: the conformed volumes as NIfTI, same values, the grid's affine
    img = nib.load(out / "nifti" / "lps_lps.nii.gz")  # no {FID} in the pattern: FID = IID
    np.testing.assert_allclose(img.affine, aff)
    np.testing.assert_allclose(img.get_fdata(), st.volume(ids.index("lps")), atol=1e-6)


# -- FLIRT -----------------------------------------------------------------------------------------

def _rigid(rx_deg, rz_deg, shift):
    rx, rz = np.deg2rad(rx_deg), np.deg2rad(rz_deg)
    Rx = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    Rz = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    w = np.eye(4)
    w[:3, :3] = Rz @ Rx
    w[:3, 3] = shift
    return w


def _fsl_coords(affine, shape, zooms):
    # FSL's definition, restated here rather than imported: pixdim scaling, x reversed when det > 0
    s = np.diag([*zooms, 1.0])
    if np.linalg.det(affine[:3, :3]) > 0:
        s[0, 0], s[0, 3] = -zooms[0], (shape[0] - 1) * zooms[0]
    return s


def test_flirt_matrix_brings_moved_scan_back(template, tmp_path):
    a, taff = template
    # the FLIRT reference: FSL's MNI152 2 mm grid as FSL stores it (x right-to-left)
    rshape, raff, rz = (91, 109, 91), np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]]), (2.0, 2.0, 2.0)
    nib.save(nib.Nifti1Image(np.zeros(rshape, np.uint8), raff), tmp_path / "ref.nii.gz")
    # a scanner-space image in neurological storage (det > 0, so FSL flips its x), 1.5 mm, moved:
    # the scan's world point w shows what the template shows at W @ w
    W = _rigid(8.0, -12.0, (6.0, -9.0, 11.0))
    sshape, szooms = (120, 150, 125), (1.5, 1.5, 1.5)
    saff = np.array([[1.5, 0, 0, -95], [0, 1.5, 0, -120], [0, 0, 1.5, -80], [0, 0, 0, 1]])
    m = np.linalg.inv(taff) @ W @ saff
    moved = ndimage.affine_transform(a, m[:3, :3], offset=m[:3, 3], output_shape=sshape, order=1)
    nib.save(nib.Nifti1Image(moved, saff), tmp_path / "moved.nii.gz")
    # its FLIRT matrix (scan FSL coords -> reference FSL coords) by FSL's definition
    mat = _fsl_coords(raff, rshape, rz) @ np.linalg.inv(raff) @ W @ saff @ np.linalg.inv(_fsl_coords(saff, sshape, szooms))
    np.savetxt(tmp_path / "moved.mat", mat, fmt="%.8f")
    # the same matrix made as if FSL did not reverse x for this neurological-storage scan
    wrong = _fsl_coords(raff, rshape, rz) @ np.linalg.inv(raff) @ W @ saff @ np.linalg.inv(np.diag([*szooms, 1.0]))
    np.savetxt(tmp_path / "wrong.mat", wrong, fmt="%.8f")
    (tmp_path / "ident.mat").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    # and an unmoved RAS copy with the identity matrix (identity is right for it, see FSL coords)
    shape2, ras2 = mni_grid(2.0)
    m2 = np.linalg.inv(taff) @ ras2
    plain = ndimage.affine_transform(a, m2[:3, :3], offset=m2[:3, 3], output_shape=shape2, order=1)
    nib.save(nib.Nifti1Image(plain, ras2), tmp_path / "plain.nii.gz")
    lst = tmp_path / "images.tsv"
    lst.write_text("FID IID PATH MAT\nf moved moved.nii.gz moved.mat\nf plain plain.nii.gz ident.mat\n"
                   "f nomat moved.nii.gz NA\nf wrong moved.nii.gz wrong.mat\n")
    out = tmp_path / "flirt"
    gimtool("prep-mri", "--images", lst, "--ref", tmp_path / "ref.nii.gz", "--voxel", "4", "--out", out, "--qc-threshold", "0")
    st = ImageStore(out)
    ids = st.manifest["IID"].to_list()
    shape4, aff4 = mni_grid(4.0)
    mm = np.linalg.inv(taff) @ aff4
    truth = ndimage.affine_transform(ndimage.gaussian_filter(a, 1.5), mm[:3, :3], offset=mm[:3, 3], output_shape=shape4, order=1)
    back = st.volume(ids.index("moved"))
    assert corr(back, truth) >= 0.98
    assert corr(st.volume(ids.index("plain")), truth) >= 0.98
    # without its matrix the moved scan is visibly elsewhere
    assert corr(st.volume(ids.index("nomat")), truth) < 0.9
    # the x reversal matters: without it the scan lands mirrored and rotated the wrong way
    assert corr(st.volume(ids.index("wrong")), truth) < 0.9


def test_flirt_mat_option_pattern_and_default_reference(template, tmp_path):
    # --flirt-mat with {IID}, default reference (FSL MNI152 1 mm grid), identity matrices
    a, taff = template
    shape2, ras2 = mni_grid(2.0)
    m2 = np.linalg.inv(taff) @ ras2
    plain = ndimage.affine_transform(a, m2[:3, :3], offset=m2[:3, 3], output_shape=shape2, order=1)
    # a 1 mm-grid scan: with the 1 mm reference and the identity, FSL coordinates agree when the
    # scan is stored on the same 1 mm grid
    shape1, ras1 = mni_grid(1.0)
    m1 = np.linalg.inv(taff) @ ras1
    one = ndimage.affine_transform(a, m1[:3, :3], offset=m1[:3, 3], output_shape=shape1, order=1)
    nib.save(nib.Nifti1Image(one, ras1), tmp_path / "s1_T1.nii.gz")
    (tmp_path / "s1.mat").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    out = tmp_path / "pat"
    assert gimtool_inproc("prep-mri", "--dir", tmp_path, "--pattern", "{IID}_T1.nii.gz", "--flirt-mat", "{IID}.mat", "--voxel", "2", "--out", out) == 0
    st = ImageStore(out)
    assert corr(st.volume(0), plain) > 0.99
    assert "FSL MNI152_T1_1mm grid" in (tmp_path / "pat.log").read_text()


# -- failures, resume, store ------------------------------------------------------------------------

def test_bad_scans_go_to_failed_tsv_and_exit_nonzero(variants, tmp_path, capsys):
    d, paths = variants
    (tmp_path / "trunc.nii.gz").write_bytes(paths["ras"].read_bytes()[:20000])
    (tmp_path / "text.nii.gz").write_text("not an image")
    nib.save(nib.Nifti1Image(np.ones((5, 6), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7, 2), np.float32), np.eye(4)), tmp_path / "multi.nii.gz")
    nib.save(nib.Nifti1Image(np.full((5, 6, 7), np.nan, np.float32), np.eye(4)), tmp_path / "nan.nii.gz")
    far = np.eye(4)
    far[:3, 3] = 5000
    nib.save(nib.Nifti1Image(np.ones((5, 6, 7), np.float32), far), tmp_path / "far.nii.gz")
    rows = [("good", paths["ras"]), ("trunc", "trunc.nii.gz"), ("text", "text.nii.gz"), ("flat", "flat.nii.gz"),
            ("multi", "multi.nii.gz"), ("nan", "nan.nii.gz"), ("missing", "missing.nii.gz"), ("far", "far.nii.gz"),
            ("good2", paths["las"])]
    lst = tmp_path / "l.tsv"
    lst.write_text("".join(f"F {i} {p}\n" for i, p in rows))
    out = tmp_path / "st"
    p = gimtool("prep-mri", "--images", lst, "--voxel", "4", "--out", out, "--threads", "2", check=False)
    assert p.returncode == 1
    assert "Error: 7 of 9 scans failed" in p.stderr and "failed.tsv" in p.stderr
    st = ImageStore(out)
    assert st.manifest["IID"].to_list() == ["good", "good2"]
    failed = pl.read_csv(out / "failed.tsv", separator="\t")
    reasons = dict(zip(failed["IID"], failed["REASON"]))
    assert set(reasons) == {"trunc", "text", "flat", "multi", "nan", "missing", "far"}
    assert "truncated or corrupt" in reasons["trunc"]
    assert "not a readable NIfTI" in reasons["text"]
    assert "2D" in reasons["flat"]
    assert "2 volumes" in reasons["multi"]
    assert "NaN" in reasons["nan"]
    assert "not found" in reasons["missing"]
    assert "does not overlap the target grid" in reasons["far"]
    log = (tmp_path / "st.log").read_text()
    assert "failed: F trunc" in log and "status: failed" in log
    capsys.readouterr()
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "4", "--out", out, "--allow-failures") == 0
    assert "Warning: 7 of 9 scans failed" in capsys.readouterr().err


def test_id_listed_twice_is_an_error(variants, tmp_path, capsys):
    d, paths = variants
    lst = tmp_path / "l.tsv"
    lst.write_text(f"FID IID PATH\nF a {paths['ras']}\nF b {paths['las']}\nF a {paths['lps']}\n")
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "4", "--out", tmp_path / "st") == 1
    assert "l.tsv: line 4: sample (FID F, IID a) listed twice, first on line 2" in capsys.readouterr().err
    assert not (tmp_path / "st").exists()


def test_resume_after_complete_store_and_after_interruption(variants, tmp_path, capsys):
    d, paths = variants
    lst = tmp_path / "l.tsv"
    lst.write_text(f"F a {paths['ras']}\nF b {paths['las']}\n")
    out = tmp_path / "st"
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "4", "--out", out) == 0
    first = ImageStore(out).volume(1)
    lst.write_text(f"F a {paths['ras']}\nF b {paths['las']}\nF c {paths['lps']}\n")
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "4", "--out", out, "--resume") == 0
    st = ImageStore(out)
    assert st.manifest["IID"].to_list() == ["a", "b", "c"]
    np.testing.assert_array_equal(st.volume(1), first)
    assert "2 listed scans already in the store, 1 to process" in (tmp_path / "st.log").read_text()
    # different settings cannot be resumed into this store
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "2", "--out", out, "--resume") == 1
    assert "cannot --resume" in capsys.readouterr().err

    # an interrupted run: one volume finished, the next half written, its progress line torn
    out2 = tmp_path / "st2"
    shape, aff = mni_grid(4.0)
    from gimtool.conventions import IMAGE_QC_COLS

    w = StoreWriter(out2, shape, aff, (4.0,) * 3, IMAGE_QC_COLS, intensity=st.meta["intensity"])
    w.append(st.volumes[0].copy(), {"FID": "F", "IID": "a", "SOURCE": str(paths["ras"]), **{c: 1 for c in IMAGE_QC_COLS}})
    w._fh.write(b"\x01" * 1000)
    w._progress.write("F\tb\t/x")
    w.close()
    assert gimtool_inproc("prep-mri", "--images", lst, "--voxel", "4", "--out", out2, "--resume") == 0
    st2 = ImageStore(out2)
    assert st2.manifest["IID"].to_list() == ["a", "b", "c"]
    np.testing.assert_array_equal(st2.volumes[:], st.volumes[:])
    assert "1 listed scans already in the store, 2 to process" in (tmp_path / "st2.log").read_text()
    assert not (tmp_path / ".st2.partial").exists()


def test_store_reader_crop_uint8_and_nifti_writeback(variants, tmp_path):
    d, paths = variants
    lst = tmp_path / "l.tsv"
    lst.write_text(f"F a {paths['ras']}\nF b {paths['pir']}\n")
    out = tmp_path / "st"
    gimtool("prep-mri", "--images", lst, "--voxel", "4", "--dtype", "uint8", "--out", out)
    st = ImageStore(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "uint8" and meta["scale"] == [1 / 32, -4.0] and (out / "images.u8").is_file()
    v = st.volume(1)
    assert v.dtype == np.float32
    c = st.crop(1, (3, 4, 5), (10, 11, 12))
    np.testing.assert_array_equal(c, v[3:13, 4:15, 5:17])
    raw = st.crop(1, (3, 4, 5), (10, 11, 12), raw=True)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(st.decode(raw), c)
    with pytest.raises(ValueError, match="does not fit"):
        st.crop(0, (40, 0, 0), (10, 10, 10))
    starts = [(3, 4, 5), (0, 0, 0), (36, 44, 34)]
    for threads in (1, 2):
        b = st.crop_batch([1, 0, 1], starts, (10, 11, 12), raw=False, threads=threads)
        assert b.shape == (3, 10, 11, 12) and b.dtype == np.float32
        for k, (i, s0) in enumerate(zip([1, 0, 1], starts)):
            np.testing.assert_array_equal(b[k], st.crop(i, s0, (10, 11, 12)))
    rb = st.crop_batch([1, 0, 1], starts, (10, 11, 12), raw=True)
    assert rb.dtype == np.uint8
    np.testing.assert_array_equal(st.decode(rb[0]), c)
    assert st.index("F", "b") == 1
    st.to_nifti(1, tmp_path / "b.nii.gz")
    img = nib.load(tmp_path / "b.nii.gz")
    np.testing.assert_allclose(img.get_fdata(), v)
    np.testing.assert_allclose(img.affine, st.affine)
    # the mean image is written for viewing too
    assert nib.load(out / "mean.nii.gz").shape == (46, 55, 46)


def test_dir_reads_images_tsv_and_mask_sets_the_brain(template, variants, tmp_path):
    d, paths = variants
    a, taff = template
    (tmp_path / "images.tsv").write_text(f"FID\tIID\tPATH\nF\ta\t{paths['ras']}\nF\tb\t{paths['int16scaled']}\n")
    # a brain mask in MNI space (1 mm, template grid): a box inside the brain, so it differs from the support
    mask = np.zeros(a.shape, np.uint8)
    mask[60:140, 70:170, 50:140] = 1
    nib.save(nib.Nifti1Image(mask, taff), tmp_path / "mask.nii.gz")
    out = tmp_path / "st"
    assert gimtool_inproc("prep-mri", "--dir", tmp_path, "--mask", tmp_path / "mask.nii.gz", "--voxel", "4", "--out", out) == 0
    st = ImageStore(out)
    assert st.manifest["IID"].to_list() == ["a", "b"]
    shape, aff = mni_grid(4.0)
    m = np.linalg.inv(taff) @ aff
    on_grid = ndimage.affine_transform(mask.astype(np.float32), m[:3, :3], offset=m[:3, 3], output_shape=shape, order=1) >= 0.5
    assert st.manifest["BRAIN_VOXELS"].to_list() == [int(on_grid.sum())] * 2
    v = st.volume(0)
    assert abs(v[on_grid].mean()) < 1e-2 and abs(v[on_grid].std() - 1) < 1e-2
    assert np.all(v[~on_grid] == v[~on_grid][0])  # everything outside the mask is background
    assert json.loads((out / "meta.json").read_text())["intensity"]["mask"].endswith("mask.nii.gz")


@pytest.mark.slow
def test_reads_a_simulated_cohort(tmp_path):
    # the simulator writes DIR/images.tsv (FID IID PATH, relative) on the same MNI grid
    sim = tmp_path / "sim"
    assert gimtool_inproc("simulate", "--preset", "tiny", "--out", sim) == 0
    lst = pl.read_csv(sim / "images.tsv", separator="\t")
    img = nib.load(sim / lst["PATH"][0])
    voxel = float(img.header.get_zooms()[0])
    out = tmp_path / "st"
    assert gimtool_inproc("prep-mri", "--dir", sim, "--voxel", voxel, "--out", out, "--threads", "2") == 0
    st = ImageStore(out)
    assert st.n == lst.height and st.samples["IID"].to_list() == lst["IID"].cast(pl.Utf8).to_list()
    np.testing.assert_allclose(st.affine, img.affine)  # the same grid: conforming is a copy
    src = img.get_fdata(dtype=np.float32)
    brain = src != 0
    v = st.volume(0)
    assert corr(v, src, brain) > 0.999  # z-scoring is affine up to the 0.5 % clipped tails
    assert np.all(v[~brain] == v[~brain][0])
