import io
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
    # A file:// URL stands in for GitHub: the download path runs offline.
    monkeypatch.setattr(_omniglot, "_URL", OMNIGLOT_DIR.as_uri() + "/{name}")
    X, _ = load_omniglot(data_home=tmp_path, download=True, return_X_y=True)
    assert X.shape == (4840, 28 * 28)
    assert _sha256(tmp_path / "omniglot" / SMALL1.name) == _sha256(SMALL1)

    corrupt = tmp_path / "mirror"
    corrupt.mkdir()
    (corrupt / SMALL1.name).write_bytes(b"corrupted")
    monkeypatch.setattr(_omniglot, "_URL", corrupt.as_uri() + "/{name}")
    with pytest.raises(OSError, match="sha256"):
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
