"""Helpers shared by the dataset loaders: data home, downloads, checksums."""

import hashlib
import os
from pathlib import Path
from sklearn.datasets import fetch_file

__all__ = ["get_data_home"]


def get_data_home(data_home=None):
    """Return the folder where skmeta keeps downloaded and cached data.

    The folder is created if it does not exist. By default it is the value
    of the ``SKMETA_DATA`` environment variable, or ``~/skmeta_data`` when
    that is unset.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder to use. ``None`` means ``$SKMETA_DATA`` or
        ``~/skmeta_data``. A leading ``~`` is expanded.

    Returns
    -------
    data_home : str
        The path of the (now existing) data folder.

    Examples
    --------
    >>> import tempfile
    >>> from skmeta.datasets import get_data_home
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     get_data_home(tmp) == tmp
    True
    """
    if data_home is None:
        data_home = os.environ.get("SKMETA_DATA", os.path.join("~", "skmeta_data"))
    data_home = os.path.expanduser(os.fspath(data_home))
    os.makedirs(data_home, exist_ok=True)
    return data_home


def _sha256(path, chunk_size=1 << 20):
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_sha256(path, expected):
    """Raise OSError if the file's sha256 differs from ``expected``."""
    actual = _sha256(path)
    if actual != expected.lower():
        raise OSError(
            f"{path} has sha256 {actual}, expected {expected}: the file is "
            "corrupted or not the one published. Delete it and try again."
        )


def _fetch(url, dest, sha256=None):
    """Download ``url`` to ``dest`` with scikit-learn's ``fetch_file``
    (retries, sha256 verification, the file moved into place only once
    complete and verified, so an interrupted or corrupted download never
    leaves a file that a later call would trust)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return fetch_file(url, folder=dest.parent, local_filename=dest.name, sha256=sha256)
