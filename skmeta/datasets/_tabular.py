"""Tabular classification datasets stored as CSV files with a target column.

The shared collection holds 35 datasets of the KEEL repository (most of them
from the UCI Machine Learning Repository), one gzip CSV each plus an
``index.csv`` that describes them.

Alcala-Fdez, J., Fernandez, A., Luengo, J., Derrac, J., Garcia, S.,
Sanchez, L. and Herrera, F. (2011). KEEL data-mining software tool: data set
repository, integration of algorithms and experimental analysis framework.
Journal of Multiple-Valued Logic and Soft Computing, 17, 255-287.
"""

import csv
import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._base import get_data_home

__all__ = ["load_tabular", "list_tabular_datasets"]

# Cells read as missing values (NaN) in numeric and nominal columns alike.
_MISSING = frozenset(["", "?", "NA", "NaN", "nan"])
_INDEX_INT_FIELDS = ("n_rows", "n_features", "n_numeric", "n_classes", "min_class", "max_class", "n_missing")

_DESCR = """\
{name}
{underline}

{n_rows} rows, {n_features} features ({n_numeric} numeric, {n_nominal} nominal),
{n_classes} classes (smallest {min_class} rows, largest {max_class}).

Read from: {filename}.

Nominal features are kept as strings (object dtype) for scikit-learn's
encoders; numeric features are floats. ``categorical_features`` marks the
nominal columns.
"""


def _folder(data_home):
    return Path(get_data_home(data_home)) / "tabular"


def _resolve(name_or_path, data_home):
    """Path of the CSV file named by ``name_or_path``: an existing file, or a
    dataset name looked up as ``<data_home>/tabular/<name>.csv[.gz]``."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or path-like, got {type(name_or_path).__name__}")
    path = Path(os.path.expanduser(os.fspath(name_or_path)))
    if path.is_file():
        return path
    looks_like_path = path.suffix in (".csv", ".gz") or len(path.parts) > 1
    if looks_like_path:
        raise FileNotFoundError(f"no such CSV file: {path}")
    folder = _folder(data_home)
    for suffix in (".csv.gz", ".csv"):
        candidate = folder / (path.name + suffix)
        if candidate.is_file():
            return candidate
    available = sorted(p.name.split(".")[0] for p in folder.glob("*.csv*"))
    hint = f"available: {', '.join(available)}" if available else "that folder holds no CSV files"
    raise FileNotFoundError(
        f"no tabular dataset {path.name!r} in {folder} ({hint}); pass data_home= "
        "(the folder that contains 'tabular/') or the path of a CSV file"
    )


def _read_rows(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty: expected a header row")
    header, body = rows[0], rows[1:]
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: line {i + 2} has {len(row)} fields but the header has {len(header)}"
            )
    return header, body


def _parse_column(values):
    """A column as float64 if every present cell is a number, else as object
    (strings, NaN for missing cells); returns (column, is_nominal)."""
    values = np.asarray(values, dtype=object)
    missing = np.isin(values, list(_MISSING))
    try:
        numbers = np.where(missing, "nan", values).astype(np.float64)
    except ValueError:
        column = values.copy()
        column[missing] = np.nan
        return column, True
    return numbers, False


def load_tabular(name_or_path, *, data_home=None, target_column="target", return_X_y=False):
    """Load a tabular classification dataset from a CSV file with a target column.

    Reads the shared KEEL/UCI collection by name (``"letter"``, ``"crx"``,
    ...) from ``<data_home>/tabular/<name>.csv.gz``, or any CSV file (plain
    or gzip) by path. A column whose every cell is a number becomes a
    float64 feature; any other column is nominal and keeps its strings, so
    that :class:`~sklearn.preprocessing.OneHotEncoder` or
    :class:`~sklearn.preprocessing.OrdinalEncoder` in a
    :class:`~sklearn.compose.ColumnTransformer` can encode it. Empty cells
    and ``?`` are missing values (NaN).

    Parameters
    ----------
    name_or_path : str or path-like
        A dataset name of the collection (see :func:`list_tabular_datasets`)
        or the path of a CSV file whose first row is a header.

    data_home : str or path-like, default=None
        The folder holding ``tabular/``; see
        :func:`~skmeta.datasets.get_data_home`. Ignored when
        ``name_or_path`` is a file.

    target_column : str, default="target"
        Header of the column holding the class labels.

    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_samples, n_features)
            float64 when every feature is numeric; otherwise object, with
            floats in numeric columns and strings in nominal ones.
        target : ndarray of shape (n_samples,), str
            Class labels as written in the file.
        target_names : ndarray of shape (n_classes,), str
            Sorted distinct labels.
        feature_names : ndarray of shape (n_features,), str
            Column headers, without the target.
        categorical_features : ndarray of shape (n_features,), bool
            True for nominal (string) columns.
        filename : str
            The file read.
        DESCR : str
            Description of the dataset.

    (data, target) : tuple if ``return_X_y`` is True

    See Also
    --------
    list_tabular_datasets : The datasets of the collection and their sizes.
    skmeta.tasks.DatasetCollection : Episodes across datasets.

    References
    ----------
    .. [1] Alcala-Fdez, J. et al. (2011). KEEL data-mining software tool:
       data set repository, integration of algorithms and experimental
       analysis framework. Journal of Multiple-Valued Logic and Soft
       Computing, 17, 255-287.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skmeta.datasets import load_tabular
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     csv = Path(tmp) / "toy.csv"
    ...     _ = csv.write_text("size,colour,target\\n1.5,red,a\\n2.0,blue,b\\n0.5,red,a\\n")
    ...     toy = load_tabular(csv)
    >>> toy.data
    array([[1.5, 'red'],
           [2.0, 'blue'],
           [0.5, 'red']], dtype=object)
    >>> toy.categorical_features, toy.target
    (array([False,  True]), array(['a', 'b', 'a'], dtype='<U1'))

    The shared collection, by name:

    >>> letter = load_tabular("letter", data_home="data")  # doctest: +SKIP
    >>> letter.data.shape, len(letter.target_names)  # doctest: +SKIP
    ((20000, 16), 26)
    """
    path = _resolve(name_or_path, data_home)
    header, body = _read_rows(path)
    if target_column not in header:
        raise ValueError(f"{path} has no column {target_column!r}; its columns are {header}")
    target_index = header.index(target_column)
    columns = list(zip(*body)) if body else [()] * len(header)
    target = np.asarray(columns[target_index], dtype=str)
    if len(target) == 0:
        raise ValueError(f"{path} has a header but no rows")
    if np.isin(target, list(_MISSING)).any():
        raise ValueError(f"{path}: the {target_column!r} column has missing labels")
    feature_names = [name for i, name in enumerate(header) if i != target_index]
    parsed = [_parse_column(column) for i, column in enumerate(columns) if i != target_index]
    nominal = np.array([is_nominal for _, is_nominal in parsed], dtype=bool)
    if nominal.any():
        data = np.empty((len(target), len(parsed)), dtype=object)
        for j, (column, _) in enumerate(parsed):
            data[:, j] = column
    else:
        data = np.column_stack([column for column, _ in parsed]) if parsed else np.empty((len(target), 0))
    if return_X_y:
        return data, target
    target_names, counts = np.unique(target, return_counts=True)
    name = path.name.split(".")[0]
    descr = _DESCR.format(
        name=name,
        underline="-" * len(name),
        n_rows=len(target),
        n_features=len(feature_names),
        n_numeric=int((~nominal).sum()),
        n_nominal=int(nominal.sum()),
        n_classes=len(target_names),
        min_class=int(counts.min()),
        max_class=int(counts.max()),
        filename=path,
    )
    return Bunch(
        data=data,
        target=target,
        target_names=target_names,
        feature_names=np.asarray(feature_names, dtype=str),
        categorical_features=nominal,
        filename=str(path),
        DESCR=descr,
    )


def list_tabular_datasets(*, data_home=None):
    """The datasets of the tabular collection, as listed in its ``index.csv``.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder holding ``tabular/index.csv``; see
        :func:`~skmeta.datasets.get_data_home`.

    Returns
    -------
    index : numpy structured array of shape (n_datasets,)
        One record per dataset with fields ``name`` (str), ``n_rows``,
        ``n_features``, ``n_numeric``, ``n_classes``, ``min_class``,
        ``max_class`` (smallest and largest class size) and ``n_missing``
        (int). Filter it like any array, e.g.
        ``index["name"][index["n_classes"] >= 10]``.

    See Also
    --------
    load_tabular : Load one of them.

    Examples
    --------
    >>> from skmeta.datasets import list_tabular_datasets
    >>> index = list_tabular_datasets(data_home="data")  # doctest: +SKIP
    >>> index["name"][index["n_classes"] >= 10]  # doctest: +SKIP
    array(['led7digit', 'letter', 'optdigits', 'penbased', 'texture'], dtype='<U13')
    """
    path = _folder(data_home) / "index.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"no tabular index at {path}; pass data_home= (the folder that contains 'tabular/')"
        )
    with open(path, newline="") as f:
        records = list(csv.DictReader(f))
    missing = {"name", *_INDEX_INT_FIELDS} - set(records[0] if records else ())
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    width = max(len(r["name"]) for r in records)
    dtype = [("name", f"<U{width}")] + [(field, np.int64) for field in _INDEX_INT_FIELDS]
    return np.array(
        [(r["name"], *(int(r[field]) for field in _INDEX_INT_FIELDS)) for r in records], dtype=dtype
    )
