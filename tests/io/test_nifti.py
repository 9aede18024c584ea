"""NIfTI loading and validation (gimtool.io.nifti): every bad input gives one line naming the file."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from gimtool.errors import InputError
from gimtool.io.nifti import load_header, load_volume, read_flirt_mat, read_image_list, save_volume, scan_image_dir

AFF = np.array([[2.0, 0, 0, -10], [0, 2.5, 0, -20], [0, 0, 3, -30], [0, 0, 0, 1]])


def _vol(shape=(7, 8, 9), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(1, 100, size=shape).astype(np.float32)


def _save(path, data, affine=AFF, dtype=None, slope=None, inter=None):
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_float_3d(tmp_path, suffix):
    d = _vol()
    v = load_volume(_save(tmp_path / f"a{suffix}", d))
    assert v.data.dtype == np.float32 and v.data.shape == (7, 8, 9)
    np.testing.assert_array_equal(v.data, d)
    np.testing.assert_allclose(v.affine, AFF)
    assert v.zooms == (2.0, 2.5, 3.0)


def test_load_int16_applies_slope_and_intercept(tmp_path):
    codes = np.arange(7 * 8 * 9, dtype=np.int16).reshape(7, 8, 9)
    img = nib.Nifti1Image(codes, AFF)
    img.header.set_slope_inter(0.5, -3.0)
    p = tmp_path / "s.nii.gz"
    # write the raw codes with the scale factors in the header, as scanners do
    img.header.set_data_dtype(np.int16)
    nib.save(img, p)
    raw = nib.load(p)
    assert raw.dataobj.slope == 0.5 and raw.dataobj.inter == -3.0
    v = load_volume(p)
    np.testing.assert_allclose(v.data, codes * 0.5 - 3.0)


def test_load_4d_with_one_volume(tmp_path):
    d = _vol()
    v = load_volume(_save(tmp_path / "a.nii.gz", d[..., None]))
    np.testing.assert_array_equal(v.data, d)


def test_load_nifti2(tmp_path):
    d = _vol()
    p = tmp_path / "a.nii"
    nib.save(nib.Nifti2Image(d, AFF), p)
    np.testing.assert_array_equal(load_volume(p).data, d)


def test_some_nan_voxels_are_zeroed_and_counted(tmp_path):
    d = _vol()
    d[0, 0, :3] = np.nan
    d[1, 1, 1] = np.inf
    v = load_volume(_save(tmp_path / "a.nii.gz", d))
    assert v.n_nonfinite == 4 and np.all(np.isfinite(v.data)) and v.data[0, 0, 0] == 0


# -- bad inputs ------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.nii\.gz: image file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_gz(tmp_path):
    p = _save(tmp_path / "t.nii.gz", _vol((40, 40, 40)))
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InputError, match=r"t\.nii\.gz: .*(truncated or corrupt|not a readable NIfTI)"):
        load_volume(p)


def test_truncated_uncompressed(tmp_path):
    p = _save(tmp_path / "t.nii", _vol((20, 20, 20)))
    blob = p.read_bytes()
    p.write_bytes(blob[: 352 + 100])
    with pytest.raises(InputError, match=r"t\.nii: .*(truncated or corrupt|not a readable NIfTI)"):
        load_volume(p)


def test_not_a_nifti_text_with_nii_gz_name(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_text("this is not an image\n")
    with pytest.raises(InputError, match=r"x\.nii\.gz: not a readable NIfTI"):
        load_volume(p)


def test_not_a_nifti_gzipped_garbage(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(1).bytes(2000)))
    with pytest.raises(InputError, match=r"x\.nii\.gz: not a readable NIfTI"):
        load_volume(p)


def test_wrong_extension(tmp_path):
    p = tmp_path / "x.mgz"
    p.write_bytes(b"0" * 10)
    with pytest.raises(InputError, match=r"x\.mgz: expected a NIfTI file ending in \.nii or \.nii\.gz"):
        load_volume(p)


def test_2d_image(tmp_path):
    p = _save(tmp_path / "flat.nii.gz", _vol((10, 12)))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: image is 2D with shape \(10, 12\); expected a 3D volume"):
        load_volume(p)


def test_single_slice_3d_is_2d(tmp_path):
    p = _save(tmp_path / "slab.nii.gz", _vol((10, 12, 1)))
    with pytest.raises(InputError, match=r"slab\.nii\.gz: .*at least 2 voxels"):
        load_volume(p)


def test_4d_with_several_volumes(tmp_path):
    p = _save(tmp_path / "bold.nii.gz", _vol((7, 8, 9, 3)))
    with pytest.raises(InputError, match=r"bold\.nii\.gz: image has shape \(7, 8, 9, 3\), i\.e\. 3 volumes; expected a 3D image or a 4D image with one volume"):
        load_volume(p)


def test_all_nan(tmp_path):
    p = _save(tmp_path / "nan.nii.gz", np.full((7, 8, 9), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match=r"nan\.nii\.gz: every voxel is NaN or infinite"):
        load_volume(p)


def test_all_zero(tmp_path):
    p = _save(tmp_path / "zero.nii.gz", np.zeros((7, 8, 9), dtype=np.float32))
    with pytest.raises(InputError, match=r"zero\.nii\.gz: every voxel is zero"):
        load_volume(p)


def test_singular_affine(tmp_path):
    aff = AFF.copy()
    aff[2, :3] = 0
    img = nib.Nifti1Image(_vol(), None)
    img.header.set_sform(aff, code=1)  # nibabel refuses a singular qform, a broken writer may not
    p = tmp_path / "sing.nii.gz"
    nib.save(img, p)
    with pytest.raises(InputError, match=r"sing\.nii\.gz: the image affine .* singular"):
        load_volume(p)


def test_header_only(tmp_path):
    h = load_header(_save(tmp_path / "r.nii.gz", _vol()))
    assert h.shape == (7, 8, 9) and h.zooms == (2.0, 2.5, 3.0)


def test_save_volume_uint8_with_scale_roundtrip(tmp_path):
    codes = np.arange(7 * 8 * 9, dtype=np.int64).reshape(7, 8, 9) % 256
    p = tmp_path / "o.nii.gz"
    save_volume(p, codes.astype(np.uint8), AFF, scale=(1 / 32, -4.0))
    img = nib.load(p)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.get_fdata(), codes / 32 - 4.0)
    np.testing.assert_allclose(img.affine, AFF)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


# -- FLIRT matrices and image lists -------------------------------------------------------------------

def test_read_flirt_mat(tmp_path):
    p = tmp_path / "a.mat"
    p.write_text("1 0 0 2\n0 1 0 3  \n0 0 1 -4\n0 0 0 1\n\n")
    np.testing.assert_array_equal(read_flirt_mat(p)[:3, 3], [2, 3, -4])
    p.write_text("1 0 0 2\n0 1 0 3\n0 0 1 -4\n")
    with pytest.raises(InputError, match=r"a\.mat: expected an FSL FLIRT matrix \(4 lines of 4 numbers\), found 3"):
        read_flirt_mat(p)
    p.write_text("1 0 0 2\n0 1 0 3\n0 0 1 -4\n0 0 1 1\n")
    with pytest.raises(InputError, match=r"a\.mat: FLIRT matrix last line must be '0 0 0 1'"):
        read_flirt_mat(p)


def test_image_list_header_relative_paths_and_mat(tmp_path):
    (tmp_path / "sub").mkdir()
    lst = tmp_path / "sub" / "images.tsv"
    lst.write_text("FID\tIID\tPATH\tMAT\nf1\ti1\ta.nii.gz\tNA\nf2\ti2\t/abs/b.nii\tm/b.mat\n")
    df = read_image_list(lst)
    assert df["IID"].to_list() == ["i1", "i2"]
    assert df["PATH"].to_list() == [str(tmp_path / "sub" / "a.nii.gz"), "/abs/b.nii"]
    assert df["MAT"].to_list() == [None, str(tmp_path / "sub" / "m" / "b.mat")]


def test_image_list_headerless(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("f1 i1 /x/a.nii.gz\nf2 i2 /x/b.nii.gz /x/b.mat\n")
    df = read_image_list(lst)
    assert df["MAT"].to_list() == [None, "/x/b.mat"]


def test_image_list_id_listed_twice(tmp_path):
    lst = tmp_path / "l.tsv"
    lst.write_text("FID IID PATH\nf1 i1 a.nii\nf1 i2 b.nii\nf1 i1 c.nii\n")
    with pytest.raises(InputError, match=r"l\.tsv: line 4: sample \(FID f1, IID i1\) listed twice, first on line 2"):
        read_image_list(lst)


def test_image_list_ragged_and_no_path_column(tmp_path):
    lst = tmp_path / "l.tsv"
    lst.write_text("FID IID PATH\nf1 i1\n")
    with pytest.raises(InputError, match=r"l\.tsv: line 2: expected 3 columns as in the header, found 2"):
        read_image_list(lst)
    lst.write_text("FID IID AGE\nf1 i1 3\n")
    with pytest.raises(InputError, match=r"l\.tsv: line 1: header has no PATH column"):
        read_image_list(lst)


def test_scan_image_dir(tmp_path):
    for iid in ("s1", "s20"):
        (tmp_path / f"{iid}_T1.nii.gz").write_bytes(b"")
    (tmp_path / "s3_T2.nii.gz").write_bytes(b"")
    df = scan_image_dir(tmp_path, "{IID}_T1.nii.gz")
    assert df["IID"].to_list() == ["s1", "s20"] and df["FID"].to_list() == ["s1", "s20"]
    (tmp_path / "fam1").mkdir()
    (tmp_path / "fam1" / "p7.nii").write_bytes(b"")
    df = scan_image_dir(tmp_path, "{FID}/{IID}.nii")
    assert df.select("FID", "IID").rows() == [("fam1", "p7")]
    with pytest.raises(InputError, match=r"no file matches --pattern"):
        scan_image_dir(tmp_path, "{IID}_FLAIR.nii.gz")
