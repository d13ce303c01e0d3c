import gzip

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmeta.datasets import list_tabular_datasets, load_tabular


def _write(path, text):
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def index(tabular_path):
    return list_tabular_datasets(data_home=tabular_path.parent)


def test_index_lists_the_35_datasets_with_their_sizes(index, tabular_path):
    assert len(index) == 35
    assert set(index["name"]) == {p.name.split(".")[0] for p in tabular_path.glob("*.csv.gz")}
    letter = index[index["name"] == "letter"][0]
    assert (letter["n_rows"], letter["n_features"], letter["n_classes"]) == (20000, 16, 26)
    many = index["name"][index["n_classes"] >= 9]
    assert sorted(many) == ["led7digit", "letter", "marketing", "optdigits", "penbased", "texture"]


def test_every_dataset_loads_as_its_index_describes(index, tabular_path):
    for record in index:
        data = load_tabular(record["name"], data_home=tabular_path.parent)
        assert data.data.shape == (record["n_rows"], record["n_features"]), record["name"]
        assert int((~data.categorical_features).sum()) == record["n_numeric"], record["name"]
        _, counts = np.unique(data.target, return_counts=True)
        assert (len(counts), counts.min(), counts.max()) == (
            record["n_classes"], record["min_class"], record["max_class"]
        ), record["name"]


def test_numeric_dataset_is_float64(tabular_path):
    letter = load_tabular("letter", data_home=tabular_path.parent)
    assert letter.data.dtype == np.float64
    assert letter.target.dtype.kind == "U" and len(letter.target_names) == 26
    assert list(letter.feature_names[:3]) == ["x0", "x1", "x2"]
    assert not letter.categorical_features.any()
    assert "letter" in letter.DESCR and letter.filename.endswith("letter.csv.gz")


def test_nominal_features_are_strings_for_scikit_learn_encoders(tabular_path):
    crx = load_tabular("crx", data_home=tabular_path.parent)
    assert crx.data.dtype == object
    nominal = crx.categorical_features
    assert nominal.sum() == 9
    assert all(isinstance(v, str) for v in crx.data[:, nominal].ravel())
    assert all(isinstance(v, float) for v in crx.data[:, ~nominal].ravel())
    model = make_pipeline(
        ColumnTransformer([
            ("nominal", OneHotEncoder(handle_unknown="ignore"), nominal),
            ("numeric", StandardScaler(), ~nominal),
        ]),
        LogisticRegression(max_iter=1000),
    )
    assert model.fit(crx.data[::2], crx.target[::2]).score(crx.data[1::2], crx.target[1::2]) > 0.8


def test_return_X_y(tabular_path):
    X, y = load_tabular("iris", data_home=tabular_path.parent, return_X_y=True)
    assert X.shape == (150, 4) and y.shape == (150,)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_any_csv_by_path_with_the_target_anywhere(tmp_path, suffix):
    path = _write(tmp_path / f"toy{suffix}", "label,size,colour\nyes,1.5,red\nno,?,blue\nyes,2,\n")
    toy = load_tabular(path, target_column="label")
    assert list(toy.feature_names) == ["size", "colour"]
    np.testing.assert_array_equal(toy.target, ["yes", "no", "yes"])
    np.testing.assert_array_equal(toy.categorical_features, [False, True])
    assert toy.data[0, 0] == 1.5 and np.isnan(toy.data[1, 0]) and toy.data[2, 0] == 2.0
    assert toy.data[1, 1] == "blue" and np.isnan(toy.data[2, 1])
    np.testing.assert_array_equal(toy.target_names, ["no", "yes"])


def test_name_found_in_data_home(tmp_path):
    (tmp_path / "tabular").mkdir()
    _write(tmp_path / "tabular" / "toy.csv", "x0,target\n1,a\n2,b\n")
    assert load_tabular("toy", data_home=tmp_path).data.tolist() == [[1.0], [2.0]]


@pytest.mark.parametrize(
    "text, match",
    [
        ("x0,x1\n1,2\n", "no column 'target'"),
        ("x0,target\n1,a\n2\n", "line 3 has 1 fields but the header has 2"),
        ("x0,target\n", "no rows"),
        ("x0,target\n1,?\n", "missing labels"),
        ("", "empty"),
    ],
    ids=["no-target", "ragged", "no-rows", "missing-label", "empty"],
)
def test_malformed_csv_raises(tmp_path, text, match):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        load_tabular(path)


def test_unknown_name_lists_what_is_there(tabular_path):
    with pytest.raises(FileNotFoundError, match="no tabular dataset 'lettre'.*available: australian"):
        load_tabular("lettre", data_home=tabular_path.parent)


def test_missing_file_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        load_tabular(tmp_path / "absent.csv")
    with pytest.raises(TypeError, match="str or path-like"):
        load_tabular(3)


def test_index_missing_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tabular index"):
        list_tabular_datasets(data_home=tmp_path)
