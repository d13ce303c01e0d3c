import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from skmeta.datasets import _omniglot, get_data_home, load_omniglot, load_omniglot_runs
from skmeta.datasets._base import _sha256, _verify_sha256

# ../shared beside the repository root holds the real zips.
OMNIGLOT_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/omniglot"
SMALL1 = OMNIGLOT_DIR / "images_background_small1.zip"
SMALL2 = OMNIGLOT_DIR / "images_background_small2.zip"
ALPHABETS = [
    "Balinese",
    "Early_Aramaic",
    "Greek",
    "Japanese_(katakana)",
    "Korean",
    "Latin",
    "Sanskrit",
    "Tagalog",
]

requires_omniglot = pytest.mark.skipif(
    not (SMALL1.is_file() and SMALL2.is_file()),
    reason=f"Omniglot zips not found in {OMNIGLOT_DIR}",
)


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    return tmp_path_factory.mktemp("skmeta_data")


@pytest.fixture(scope="module")
def omniglot(data_home):
    return load_omniglot(OMNIGLOT_DIR, data_home=data_home)


@requires_omniglot
def test_union_of_small_sets_is_deduplicated(omniglot):
    assert len(omniglot.alphabet_names) == 8
    assert len(omniglot.target_names) == 242
    assert omniglot.data.shape == (4840, 28 * 28)
    np.testing.assert_array_equal(np.bincount(omniglot.target), np.full(242, 20))
    for c in range(242):
        drawers = np.sort(omniglot.drawer[omniglot.target == c])
        np.testing.assert_array_equal(drawers, np.arange(1, 21))


@requires_omniglot
def test_shapes_and_dtypes(omniglot):
    assert omniglot.data.dtype == np.float32
    assert omniglot.images.dtype == np.float32
    assert omniglot.images.shape == (4840, 28, 28)
    np.testing.assert_array_equal(omniglot.images.reshape(4840, -1), omniglot.data)
    assert omniglot.target.dtype == np.int64
    assert omniglot.drawer.dtype == np.int64
    assert omniglot.alphabet.shape == (4840,)
    assert "Lake" in omniglot.DESCR


@requires_omniglot
def test_ink_is_high_and_background_low(omniglot):
    images = omniglot.images
    assert images.min() == 0.0 and images.max() == 1.0
    # Strokes cover a small part of each image and the border is blank.
    assert 0.02 < images.mean() < 0.2
    assert (images.max(axis=(1, 2)) > 0.5).all()
    assert images[:, 0, :].mean() < 0.01


@requires_omniglot
def test_names_are_consistent_with_targets(omniglot):
    assert list(omniglot.alphabet_names) == ALPHABETS
    assert list(omniglot.target_names) == sorted(omniglot.target_names)
    assert omniglot.target_names[0] == "Balinese/character01"
    names = omniglot.target_names[omniglot.target]
    alphabets = np.array([name.split("/")[0] for name in names])
    np.testing.assert_array_equal(alphabets, omniglot.alphabet)
    assert (np.diff(omniglot.target) >= 0).all()


@requires_omniglot
def test_second_load_reads_the_cache(omniglot, data_home, monkeypatch):
    assert len(list((data_home / "omniglot_cache").glob("*.npz"))) == 1

    def fail(*args):
        raise AssertionError("decoded the zips again instead of using the cache")

    monkeypatch.setattr(_omniglot, "_read_zips", fail)
    cached = load_omniglot(OMNIGLOT_DIR, data_home=data_home)
    assert cached.keys() == omniglot.keys()
    for key in omniglot:
        np.testing.assert_array_equal(cached[key], omniglot[key])
    X, y = load_omniglot(OMNIGLOT_DIR, data_home=data_home, return_X_y=True)
    np.testing.assert_array_equal(X, omniglot.data)
    np.testing.assert_array_equal(y, omniglot.target)


@requires_omniglot
def test_image_size(tmp_path):
    X, y = load_omniglot(SMALL1, image_size=32, cache=False, return_X_y=True)
    assert X.shape == (2720, 32 * 32)
    assert X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0


@requires_omniglot
@pytest.mark.parametrize(
    "zip_file, n_alphabets, n_characters", [(SMALL1, 5, 136), (SMALL2, 5, 156)]
)
def test_single_zip_reads_only_that_zip(zip_file, n_alphabets, n_characters):
    bunch = load_omniglot(zip_file, cache=False)
    assert len(bunch.alphabet_names) == n_alphabets
    assert len(bunch.target_names) == n_characters
    assert len(bunch.target) == 20 * n_characters


@requires_omniglot
def test_subsets_select_zips_of_a_folder():
    bunch = load_omniglot(OMNIGLOT_DIR, subsets="background_small2", cache=False)
    assert len(bunch.target_names) == 156
    with pytest.raises(ValueError, match="Unknown Omniglot subsets"):
        load_omniglot(OMNIGLOT_DIR, subsets=["small3"])
    with pytest.raises(ValueError, match="one zip file"):
        load_omniglot(SMALL1, subsets=["background_small1"])


def test_missing_files_raise_a_helpful_error(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        load_omniglot(folder, data_home=tmp_path)
    message = str(error.value)
    assert str(folder) in message
    assert "images_background_small1.zip" in message
    assert "images_background_small2.zip" in message
    assert "download=True" in message

    with pytest.raises(FileNotFoundError, match="omniglot"):
        load_omniglot(data_home=tmp_path / "empty_home")
    with pytest.raises(FileNotFoundError, match="images_evaluation.zip"):
        load_omniglot(tmp_path, subsets=["evaluation"])


def test_get_data_home(tmp_path, monkeypatch):
    assert get_data_home(tmp_path / "a") == str(tmp_path / "a")
    assert (tmp_path / "a").is_dir()
    monkeypatch.setenv("SKMETA_DATA", str(tmp_path / "b"))
    assert get_data_home() == str(tmp_path / "b")
    assert (tmp_path / "b").is_dir()


def test_verify_sha256_rejects_a_wrong_file(tmp_path):
    file = tmp_path / "file.zip"
    file.write_bytes(b"not omniglot")
    _verify_sha256(file, _sha256(file))
    with pytest.raises(OSError, match="sha256"):
        _verify_sha256(file, _omniglot._SUBSETS["background_small1"])


@requires_omniglot
def test_download_fetches_and_verifies(tmp_path, monkeypatch):
    # A file:// URL (with a host, as scikit-learn's fetch_file wants) stands
    # in for GitHub: the download path runs offline.
    monkeypatch.setattr(_omniglot, "_URL", "file://localhost" + OMNIGLOT_DIR.as_posix() + "/{name}")
    X, _ = load_omniglot(data_home=tmp_path, download=True, return_X_y=True)
    assert X.shape == (4840, 28 * 28)
    assert _sha256(tmp_path / "omniglot" / SMALL1.name) == _sha256(SMALL1)

    corrupt = tmp_path / "mirror"
    corrupt.mkdir()
    (corrupt / SMALL1.name).write_bytes(b"corrupted")
    monkeypatch.setattr(_omniglot, "_URL", "file://localhost" + corrupt.as_posix() + "/{name}")
    with pytest.raises(OSError, match="(?i)sha256"):
        load_omniglot(tmp_path / "fresh", subsets="background_small1", download=True)
    assert not any((tmp_path / "fresh").iterdir())


def _png(box):
    image = Image.new("1", (105, 105), 1)
    ImageDraw.Draw(image).rectangle(box, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_omniglot_runs(tmp_path):
    # Same layout as Lake's all_runs.zip, 3-way instead of 20-way.
    boxes = [(0, 0, 30, 30), (40, 40, 70, 70), (75, 75, 104, 104)]
    answers = {1: 3, 2: 1, 3: 2}  # test item -> training class
    with zipfile.ZipFile(tmp_path / "all_runs.zip", "w") as archive:
        for run in ("run01", "run02"):
            for c, box in enumerate(boxes, start=1):
                archive.writestr(f"{run}/training/class{c:02d}.png", _png(box))
            for item, c in answers.items():
                archive.writestr(f"{run}/test/item{item:02d}.png", _png(boxes[c - 1]))
            archive.writestr(
                f"{run}/class_labels.txt",
                "".join(
                    f"{run}/test/item{item:02d}.png {run}/training/class{c:02d}.png\n"
                    for item, c in answers.items()
                ),
            )

    runs = load_omniglot_runs(tmp_path, image_size=14)
    assert [run.name for run in runs] == ["run01", "run02"]
    run = runs[0]
    assert run.X_support.shape == (3, 14 * 14)
    assert run.X_support.dtype == np.float32
    np.testing.assert_array_equal(run.y_support, [0, 1, 2])
    np.testing.assert_array_equal(run.y_query, [2, 0, 1])
    # Each query image is the drawing of its true class, with ink high.
    np.testing.assert_array_equal(run.X_query, run.X_support[run.y_query])
    assert run.X_support[0, 0] == 1.0 and run.X_support[0, -1] == 0.0

    with pytest.raises(FileNotFoundError, match="all_runs.zip"):
        load_omniglot_runs(tmp_path / "missing")


# ----------------------------------------------------------------------
# bad arguments, damaged files
# ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "image_size, error",
    [(10**6, ValueError), (0, ValueError), (-3, ValueError), (27.9, TypeError), (28.0, TypeError),
     ("28", TypeError), (True, TypeError)],
)
def test_bad_image_size_is_rejected_before_reading(tmp_path, image_size, error):
    # tmp_path holds no zip: the size is checked before anything is read or allocated.
    with pytest.raises(error, match="image_size"):
        load_omniglot(tmp_path, image_size=image_size, data_home=tmp_path)
    with pytest.raises(error, match="image_size"):
        load_omniglot_runs(tmp_path, image_size=image_size)


def test_numpy_integer_image_size(tmp_path):
    folder = _write_small_omniglot(tmp_path)
    X, _ = load_omniglot(folder, image_size=np.int64(7), cache=False, return_X_y=True)
    assert X.shape == (6, 49)


def _write_small_omniglot(tmp_path, png=None):
    """A zip with Omniglot's layout: 2 alphabets, 3 characters, 2 drawers."""
    folder = tmp_path / "omniglot_zips"
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(folder / "images_background_small1.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (alphabet, character) in enumerate([("A", "character01"), ("A", "character02"), ("B", "character01")]):
            for drawer in (1, 2):
                box = (10 * index, 10 * drawer, 10 * index + 30, 10 * drawer + 30)
                data = _png(box) if png is None else png
                archive.writestr(f"images_background_small1/{alphabet}/{character}/{index:04d}_{drawer:02d}.png", data)
    return folder


def test_inconsistent_cache_is_rebuilt(tmp_path):
    folder = _write_small_omniglot(tmp_path)
    home = tmp_path / "home"
    expected = load_omniglot(folder, image_size=7, data_home=home)
    (cache_file,) = (home / "omniglot_cache").glob("*.npz")
    with np.load(cache_file) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["target"] = arrays["target"][:-1]  # one image without its label
    np.savez_compressed(cache_file, **arrays)
    with pytest.warns(UserWarning, match="inconsistent Omniglot cache.*rebuilding"):
        rebuilt = load_omniglot(folder, image_size=7, data_home=home)
    for key in ("data", "target", "alphabet", "drawer"):
        np.testing.assert_array_equal(rebuilt[key], expected[key])
    # The rebuilt cache is whole again: read without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_omniglot(folder, image_size=7, data_home=home)


def test_cache_with_wrong_image_shape_is_rebuilt(tmp_path):
    folder = _write_small_omniglot(tmp_path)
    home = tmp_path / "home"
    load_omniglot(folder, image_size=7, data_home=home)
    (cache_file,) = (home / "omniglot_cache").glob("*.npz")
    with np.load(cache_file) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["images"] = arrays["images"][:, :5, :5]
    np.savez_compressed(cache_file, **arrays)
    with pytest.warns(UserWarning, match="inconsistent"):
        assert load_omniglot(folder, image_size=7, data_home=home).data.shape == (6, 49)


def test_not_a_zip_names_the_file(tmp_path):
    (tmp_path / "images_background_small1.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="images_background_small1.zip.*not a readable zip"):
        load_omniglot(tmp_path, cache=False)


def test_truncated_zip_names_the_file(tmp_path):
    folder = _write_small_omniglot(tmp_path)
    file = folder / "images_background_small1.zip"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(ValueError, match="images_background_small1.zip"):
        load_omniglot(folder, cache=False)


def test_damaged_member_names_the_file_and_member(tmp_path):
    folder = _write_small_omniglot(tmp_path)
    file = folder / "images_background_small1.zip"
    data = bytearray(file.read_bytes())
    with zipfile.ZipFile(file) as archive:
        info = archive.infolist()[2]
    # Flip bytes inside the member's compressed data (after its local header).
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 5, start + 25):
        data[i] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"images_background_small1.zip: member '{info.filename}'"):
        load_omniglot(folder, cache=False)


def test_member_that_is_not_a_png_names_the_file_and_member(tmp_path):
    folder = _write_small_omniglot(tmp_path, png=b"\x89PNG but not really")
    with pytest.raises(ValueError, match="images_background_small1.zip: member .*not a readable PNG"):
        load_omniglot(folder, cache=False)


def _write_runs(path, labels_text, with_labels=True):
    with zipfile.ZipFile(path, "w") as archive:
        for c in (1, 2):
            archive.writestr(f"run01/training/class{c:02d}.png", _png((0, 0, 10 * c, 10 * c)))
        archive.writestr("run01/test/item01.png", _png((0, 0, 10, 10)))
        if with_labels:
            archive.writestr("run01/class_labels.txt", labels_text)


@pytest.mark.parametrize(
    "labels_text, match",
    [
        ("run01/test/item01.png\n", "even number of names"),  # 1 query image, 0 labels
        ("", "even number of names"),
        ("run01/test/item02.png run01/training/class01.png\n", "does not hold"),
        ("run01/test/item01.png run01/training/class09.png\n", "not a training image"),
    ],
)
def test_runs_never_pair_images_and_labels_wrongly(tmp_path, labels_text, match):
    _write_runs(tmp_path / "all_runs.zip", labels_text)
    with pytest.raises(ValueError, match=match):
        load_omniglot_runs(tmp_path)


def test_run_without_labels_file(tmp_path):
    _write_runs(tmp_path / "all_runs.zip", "", with_labels=False)
    with pytest.raises(ValueError, match="run01 has no class_labels.txt"):
        load_omniglot_runs(tmp_path)


def test_corrupt_runs_zip_names_the_file(tmp_path):
    (tmp_path / "all_runs.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="all_runs.zip"):
        load_omniglot_runs(tmp_path)
