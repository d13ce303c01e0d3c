"""Omniglot, read straight from Brenden Lake's published zip files.

Lake, B. M., Salakhutdinov, R. and Tenenbaum, J. B. (2015). Human-level
concept learning through probabilistic program induction. Science,
350(6266), 1332-1338.
"""

import hashlib
import io
import json
import numbers
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.utils import Bunch

from ._base import _fetch, get_data_home

__all__ = ["load_omniglot", "load_omniglot_runs", "OMNIGLOT_TEST_ALPHABETS"]

# The development split of the two minimal background sets: these two
# alphabets are held out for meta-testing, the other six meta-train.
OMNIGLOT_TEST_ALPHABETS = ("Japanese_(katakana)", "Tagalog")

_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{name}"

# Subset name -> published sha256 (None where no checksum is known here).
_SUBSETS = {
    "background_small1": (
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"
    ),
    "background_small2": (
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"
    ),
    "background": None,
    "evaluation": None,
}
_DEFAULT_DOWNLOAD = ("background_small1", "background_small2")
_ORIGINAL_SIZE = 105
# Beyond twice the original resolution, upsampling adds memory, not detail
# (the two small sets at 210 px already take 850 MB as float32).
_MAX_IMAGE_SIZE = 2 * _ORIGINAL_SIZE
# What a damaged zip or image raises while being read: BadZipFile (bad
# headers, CRC), zlib.error and EOFError (bad or truncated compressed data),
# OSError and UnidentifiedImageError (a member that is not a whole PNG).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, UnidentifiedImageError, ValueError)
# Bump when the cached arrays change meaning, so stale caches are ignored.
_CACHE_VERSION = 1

_DESCR = """\
Omniglot
--------

{n_images} handwritten character images of {n_classes} characters from
{n_alphabets} alphabets, each character drawn once by each of 20 people on
Amazon Mechanical Turk. Images were resized from 105x105 to {size}x{size}
and inverted: ink is 1.0, background is 0.0.

Read from: {files}.

Characters are the classes; alphabets are natural groups for splitting
classes between meta-training and meta-testing.

References
----------
Lake, B. M., Salakhutdinov, R. and Tenenbaum, J. B. (2015). Human-level
concept learning through probabilistic program induction. Science,
350(6266), 1332-1338. https://github.com/brendenlake/omniglot
"""


def _zip_name(subset):
    return f"images_{subset}.zip"


def _check_image_size(image_size):
    """``image_size`` as an int, or a TypeError/ValueError naming it, before
    anything is allocated."""
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise TypeError(
            f"image_size must be an integer number of pixels, got {image_size!r} "
            f"of type {type(image_size).__name__}."
        )
    if not 1 <= image_size <= _MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be between 1 and {_MAX_IMAGE_SIZE} pixels (twice Omniglot's "
            f"{_ORIGINAL_SIZE}), got {image_size}."
        )
    return int(image_size)


def _open_zip(file):
    try:
        return zipfile.ZipFile(file)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"{file} is not a readable zip file ({exc}); delete it and fetch it again.") from exc


def _read_member(archive, file, member):
    try:
        return archive.read(member)
    except KeyError:
        raise ValueError(f"{file} has no member {member!r}: the zip is incomplete.") from None
    except _CORRUPT as exc:
        raise ValueError(f"{file}: member {member!r} is corrupt ({exc}); fetch the zip again.") from exc


def _decode_member(archive, file, member, image_size):
    data = _read_member(archive, file, member)
    try:
        return _decode(data, image_size)
    except _CORRUPT as exc:
        raise ValueError(f"{file}: member {member!r} is not a readable PNG image ({exc}).") from exc


def _inconsistency(arrays, image_size):
    """What is wrong with arrays read from a cache file, or None."""
    names = ("images", "target", "target_names", "alphabet", "alphabet_names", "drawer")
    missing = [name for name in names if name not in arrays]
    if missing:
        return f"missing arrays {missing}"
    images, target = arrays["images"], arrays["target"]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (image_size, image_size):
        return f"images of dtype {images.dtype} and shape {images.shape}, expected uint8 (n, {image_size}, {image_size})"
    n = len(images)
    if n == 0:
        return "no images"
    lengths = {name: len(arrays[name]) for name in ("target", "alphabet", "drawer")}
    if any(length != n for length in lengths.values()):
        return f"{n} images but lengths {lengths}"
    if not np.issubdtype(target.dtype, np.integer) or target.min() < 0 or target.max() >= len(arrays["target_names"]):
        return f"targets outside 0 .. {len(arrays['target_names']) - 1}"
    if not set(np.unique(arrays["alphabet"])) <= set(arrays["alphabet_names"]):
        return "alphabets absent from alphabet_names"
    return None


def _decode(png_bytes, image_size):
    """One Omniglot PNG as a uint8 ``image_size`` square, ink high (255)."""
    with Image.open(io.BytesIO(png_bytes)) as image:
        image = image.convert("L")
        if image_size != image.width:
            # BOX averages the one-bit pixels each output pixel covers, so
            # a downsized stroke keeps its ink mass instead of aliasing.
            resample = (
                Image.Resampling.BOX
                if image_size < image.width
                else Image.Resampling.LANCZOS
            )
            image = image.resize((image_size, image_size), resample)
        return 255 - np.asarray(image, dtype=np.uint8)


def _find_zips(path, subsets, data_home, download):
    """The zip files to read, downloading missing ones when asked."""
    if path is not None and os.fspath(path).endswith(".zip"):
        if subsets is not None:
            raise ValueError("subsets selects zips in a folder, not in one zip file.")
        files = [Path(path)]
        folder = files[0].parent
    else:
        folder = (
            Path(path)
            if path is not None
            else Path(get_data_home(data_home)) / "omniglot"
        )
        if subsets is None:
            subsets = [s for s in _SUBSETS if (folder / _zip_name(s)).is_file()]
            subsets = subsets or list(_DEFAULT_DOWNLOAD)
        elif isinstance(subsets, str):
            subsets = [subsets]
        unknown = sorted(set(subsets) - set(_SUBSETS))
        if unknown:
            raise ValueError(
                f"Unknown Omniglot subsets {unknown}; choose from {list(_SUBSETS)}."
            )
        files = [folder / _zip_name(s) for s in dict.fromkeys(subsets)]

    missing = [f for f in files if not f.is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"Omniglot zip files not found in {folder}: "
            f"{', '.join(f.name for f in missing)}. Expected Brenden Lake's "
            f"original {_zip_name('background_small1')} and "
            f"{_zip_name('background_small2')} (optionally "
            f"{_zip_name('background')} and {_zip_name('evaluation')}). "
            "Pass path= to the folder or zip file holding them, or "
            "download=True to fetch them from "
            "https://github.com/brendenlake/omniglot."
        )
    known = {_zip_name(s): sha for s, sha in _SUBSETS.items()}
    for f in missing:
        if f.name not in known:
            raise FileNotFoundError(f"{f} not found, and skmeta cannot download it.")
        _fetch(_URL.format(name=f.name), f, sha256=known[f.name])
    return files


def _cache_file(data_home, files, image_size):
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = json.dumps([_CACHE_VERSION, image_size, stats])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = Path(get_data_home(data_home)) / "omniglot_cache"
    return folder / f"omniglot_{image_size}px_{digest}.npz"


def _read_zips(files, image_size):
    """Decode every image, de-duplicated by (alphabet, character, file name)."""
    images = {}
    for file in files:
        with _open_zip(file) as archive:
            for member in archive.namelist():
                parts = PurePosixPath(member).parts
                if member.endswith(".png") and len(parts) >= 3:
                    key = parts[-3:]  # alphabet, character, "<id>_<drawer>.png"
                    if key not in images:
                        images[key] = _decode_member(archive, file, member, image_size)
    if not images:
        raise ValueError(f"No Omniglot images found in {', '.join(map(str, files))}.")
    keys = sorted(images)
    classes = sorted({(alphabet, character) for alphabet, character, _ in keys})
    class_index = {c: i for i, c in enumerate(classes)}
    alphabet_names = sorted({alphabet for alphabet, _ in classes})
    return {
        "images": np.stack([images[k] for k in keys]),
        "target": np.array([class_index[k[:2]] for k in keys], dtype=np.int64),
        "target_names": np.array([f"{a}/{c}" for a, c in classes], dtype=str),
        "alphabet": np.array([k[0] for k in keys], dtype=str),
        "alphabet_names": np.array(alphabet_names, dtype=str),
        "drawer": np.array(
            [int(Path(k[2]).stem.rsplit("_", 1)[-1]) for k in keys], dtype=np.int64
        ),
    }


def load_omniglot(
    path=None,
    *,
    subsets=None,
    image_size=28,
    data_home=None,
    download=False,
    cache=True,
    return_X_y=False,
):
    """Load the Omniglot handwritten characters from the original zip files.

    Reads Brenden Lake's published zips directly, without extracting them:
    ``images_background_small1.zip`` and ``images_background_small2.zip``
    (the "minimal" background sets) and, where present,
    ``images_background.zip`` and ``images_evaluation.zip``. Images that
    appear in several zips (Greek and Latin are in both small sets) are
    kept once. The two small sets together hold 8 alphabets, 242
    characters and 4840 images; each character is one class, drawn by 20
    people.

    Images are resized from 105x105 with Pillow and inverted so that ink
    is high: pixel values are float32 in [0, 1], strokes 1.0 and
    background 0.0.

    Parameters
    ----------
    path : str or path-like, default=None
        A folder holding the zips, or a single zip file to read alone.
        ``None`` means the folder ``omniglot`` inside ``data_home``.

    subsets : str or sequence of str, default=None
        Which zips of the folder to read, among ``"background_small1"``,
        ``"background_small2"``, ``"background"`` and ``"evaluation"``
        (file ``images_<subset>.zip``). ``None`` reads every one of them
        that is present, or, when none is and ``download=True``, downloads
        the two small sets. Must be ``None`` when ``path`` is a zip file.

    image_size : int, default=28
        Side of the returned square images, in pixels, from 1 to 210; 105
        keeps the original resolution.

    data_home : str or path-like, default=None
        Folder for downloads and the cache; see :func:`get_data_home`.
        Only the cache and downloads are written there, so ``path`` may be
        read-only.

    download : bool, default=False
        Fetch missing zips from https://github.com/brendenlake/omniglot
        into the folder being read (``path``, or ``data_home/omniglot``).
        The small sets are verified against their published sha256; no
        checksum is known for the full sets, which are fetched only when
        named in ``subsets``.

    cache : bool, default=True
        Keep the decoded images in a compressed ``.npz`` under
        ``data_home/omniglot_cache``, keyed by the zips' names, sizes and
        modification times and by ``image_size``, so later calls skip
        decoding. A cache file that cannot be read or whose arrays do not
        agree with each other is ignored with a warning and rebuilt.

    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_samples, image_size * image_size), float32
            Flattened images, ink 1.0 and background 0.0.
        images : ndarray of shape (n_samples, image_size, image_size), float32
            The same pixels as ``data`` (a view of it).
        target : ndarray of shape (n_samples,), int64
            Character (class) index, numbered in order of alphabet, then
            character.
        target_names : ndarray of shape (n_classes,), str
            ``"Alphabet/characterNN"`` for each class index.
        alphabet : ndarray of shape (n_samples,), str
            Alphabet of each image; pass it as ``groups`` to keep whole
            alphabets apart when splitting meta-training from meta-testing.
        alphabet_names : ndarray of shape (n_alphabets,), str
            Sorted alphabet names.
        drawer : ndarray of shape (n_samples,), int64
            Which of the 20 drawers (1 to 20) drew the image.
        DESCR : str
            Description of the dataset.

        Samples are sorted by alphabet, character and file name.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as above.

    See Also
    --------
    load_omniglot_runs : The 20 one-shot classification runs of the paper.

    References
    ----------
    .. [1] Lake, B. M., Salakhutdinov, R. and Tenenbaum, J. B. (2015).
       Human-level concept learning through probabilistic program induction.
       Science, 350(6266), 1332-1338.

    Examples
    --------
    >>> from skmeta.datasets import load_omniglot
    >>> omniglot = load_omniglot("data/omniglot")  # doctest: +SKIP
    >>> omniglot.data.shape  # doctest: +SKIP
    (4840, 784)
    >>> omniglot.target_names[omniglot.target[0]]  # doctest: +SKIP
    'Balinese/character01'
    >>> X, y = load_omniglot("data/omniglot", image_size=32,
    ...                      return_X_y=True)  # doctest: +SKIP
    """
    image_size = _check_image_size(image_size)
    files = _find_zips(path, subsets, data_home, download)

    arrays = None
    if cache:
        cache_file = _cache_file(data_home, files, image_size)
        try:
            with np.load(cache_file) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile):
            warnings.warn(f"Ignoring unreadable Omniglot cache {cache_file}; rebuilding it.")
        if arrays is not None:
            problem = _inconsistency(arrays, image_size)
            if problem is not None:
                warnings.warn(f"Ignoring inconsistent Omniglot cache {cache_file} ({problem}); rebuilding it.")
                arrays = None
    if arrays is None:
        arrays = _read_zips(files, image_size)
        if cache:
            # Write then rename, so a concurrent reader never sees half a file.
            partial = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.part.npz")
            try:
                cache_file.parent.mkdir(exist_ok=True)
                np.savez_compressed(partial, **arrays)
                os.replace(partial, cache_file)
            except OSError as exc:
                warnings.warn(f"Could not write the Omniglot cache {cache_file}: {exc}")
                partial.unlink(missing_ok=True)

    # Cached as uint8 (4x smaller); float32 in [0, 1] is what networks take.
    images = arrays["images"].astype(np.float32) / 255
    data = images.reshape(len(images), -1)  # a view, as in load_digits
    target = arrays["target"]
    if return_X_y:
        return data, target
    descr = _DESCR.format(
        n_images=len(target),
        n_classes=len(arrays["target_names"]),
        n_alphabets=len(arrays["alphabet_names"]),
        files=", ".join(f.name for f in files),
        size=image_size,
    )
    return Bunch(
        data=data,
        images=images,
        target=target,
        target_names=arrays["target_names"],
        alphabet=arrays["alphabet"],
        alphabet_names=arrays["alphabet_names"],
        drawer=arrays["drawer"],
        DESCR=descr,
    )


def load_omniglot_runs(path, image_size=28):
    """Load the 20 one-shot classification runs of Lake et al. (2015).

    Each run is a 20-way one-shot task: one training image for each of 20
    characters (the support set) and 20 test images to classify (the query
    set), read from ``all_runs.zip`` without extracting it. Pixels are as
    in :func:`load_omniglot`: float32 in [0, 1], ink 1.0.

    Parameters
    ----------
    path : str or path-like
        ``all_runs.zip``, or a folder holding it.

    image_size : int, default=28
        Side of the returned square images, in pixels, from 1 to 210.

    Returns
    -------
    runs : list of :class:`~sklearn.utils.Bunch`
        One per run, in run order, with attributes ``name`` (``"run01"``,
        ...), ``X_support`` of shape (20, image_size * image_size),
        ``y_support`` (0 to 19, the order of ``classNN.png``),
        ``X_query`` and ``y_query`` (the support label of each test
        image's true class, from ``class_labels.txt``).

    See Also
    --------
    load_omniglot : The background and evaluation sets.

    References
    ----------
    .. [1] Lake, B. M., Salakhutdinov, R. and Tenenbaum, J. B. (2015).
       Human-level concept learning through probabilistic program induction.
       Science, 350(6266), 1332-1338.

    Examples
    --------
    >>> from skmeta.datasets import load_omniglot_runs
    >>> runs = load_omniglot_runs("all_runs.zip")  # doctest: +SKIP
    >>> len(runs), runs[0].X_support.shape  # doctest: +SKIP
    (20, (20, 784))
    """
    image_size = _check_image_size(image_size)
    path = Path(path)
    if path.is_dir():
        path = path / "all_runs.zip"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: expected all_runs.zip from "
            "https://github.com/brendenlake/omniglot (python/one-shot-classification)."
        )
    runs = []
    with _open_zip(path) as archive:
        # Names relative to the runNN folder, whatever the zip's top folder,
        # because class_labels.txt refers to images as runNN/test/itemKK.png.
        members = {}
        for member in archive.namelist():
            parts = PurePosixPath(member).parts
            starts = [i for i, p in enumerate(parts) if re.fullmatch(r"run\d+", p)]
            if starts and not member.endswith("/"):
                members["/".join(parts[starts[0]:])] = member

        def pixels(names):
            return np.stack(
                [_decode_member(archive, path, members[n], image_size).ravel() for n in names]
            ).astype(np.float32) / 255

        for run in sorted({name.split("/")[0] for name in members}):
            support = sorted(n for n in members if n.startswith(f"{run}/training/"))
            query, answer = _run_labels(archive, path, run, members, support)
            runs.append(
                Bunch(
                    name=run,
                    X_support=pixels(support),
                    y_support=np.arange(len(support), dtype=np.int64),
                    X_query=pixels(query),
                    y_query=np.array([support.index(a) for a in answer], np.int64),
                )
            )
    return runs


def _run_labels(archive, path, run, members, support):
    """Query images and their true support images of one run, checked so
    that no run comes back with images and labels that disagree."""
    labels_name = f"{run}/class_labels.txt"
    if labels_name not in members:
        raise ValueError(f"{path}: {run} has no class_labels.txt.")
    if not support:
        raise ValueError(f"{path}: {run} has no training images.")
    try:
        labels = _read_member(archive, path, members[labels_name]).decode().split()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: {labels_name} is not text ({exc}).") from exc
    if not labels or len(labels) % 2:
        raise ValueError(
            f"{path}: {labels_name} must pair each test image with a training image "
            f"(an even number of names), got {len(labels)} names."
        )
    query, answer = labels[0::2], labels[1::2]
    for name in query:
        if name not in members:
            raise ValueError(f"{path}: {labels_name} names {name}, which the zip does not hold.")
    for name in answer:
        if name not in support:
            raise ValueError(f"{path}: {labels_name} names {name}, which is not a training image of {run}.")
    return query, answer
