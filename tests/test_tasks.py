import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from hypothesis import given, settings
from hypothesis import strategies as st

from skmeta.tasks import EpisodeSampler, Task, random_affine, rotate_classes

X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)


def test_episodes_have_requested_shape_and_labels():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=5, k_shot=2, n_query=3, n_tasks=7, random_state=0)
    tasks = list(sampler)
    assert len(tasks) == len(sampler) == 7
    for task in tasks:
        assert task.X_support.shape == (10, 64) and task.X_query.shape == (15, 64)
        assert task.y_support.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        assert task.y_query.tolist() == sorted(list(range(5)) * 3)
        assert len(set(task.classes.tolist())) == 5


def test_episode_examples_come_from_their_class_and_do_not_overlap():
    X = np.arange(200, dtype=np.float32).reshape(-1, 1)  # feature = row index
    y = np.repeat(np.arange(10), 20)
    for task in EpisodeSampler(X, y, n_way=4, k_shot=3, n_query=5, n_tasks=20, random_state=1):
        support = task.X_support[:, 0].long().numpy()
        query = task.X_query[:, 0].long().numpy()
        assert not set(support) & set(query)
        np.testing.assert_array_equal(y[support], np.repeat(task.classes, 3))
        np.testing.assert_array_equal(y[query], np.repeat(task.classes, 5))


def test_new_pass_gives_new_episodes_and_fresh_sampler_repeats_them():
    def first_classes(sampler):
        return [tuple(task.classes) for task in sampler]

    a = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=3, k_shot=1, n_query=1, n_tasks=5, random_state=0)
    b = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=3, k_shot=1, n_query=1, n_tasks=5, random_state=0)
    first_pass = first_classes(a)
    assert first_pass == first_classes(b)
    assert first_classes(a) != first_pass


def test_all_classes_and_examples_get_sampled():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=2, k_shot=1, n_query=1, n_tasks=2000, random_state=0)
    seen_classes = set()
    counts = np.zeros(10)
    for task in sampler:
        seen_classes.update(task.classes.tolist())
        counts[task.classes] += 1
    assert seen_classes == set(range(10))
    assert counts.min() > 0.8 * counts.mean()  # classes drawn uniformly


def test_too_few_examples_per_class_names_the_numbers():
    y = np.repeat(np.arange(5), 4)
    with pytest.raises(ValueError, match=r"k_shot \+ n_query = 6 .*\(class 0 has 4\)"):
        EpisodeSampler(np.zeros((20, 2)), y, n_way=2, k_shot=1, n_query=5)


def test_too_few_classes_names_the_numbers():
    with pytest.raises(ValueError, match="n_way=20 but the pool has only 10 classes"):
        EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=20, k_shot=1, n_query=1)


@pytest.mark.parametrize("kwargs", [dict(n_way=0), dict(k_shot=0), dict(n_query=-1), dict(n_tasks=0)])
def test_invalid_sizes_raise(kwargs):
    params = dict(n_way=2, k_shot=1, n_query=1) | kwargs
    with pytest.raises(ValueError):
        EpisodeSampler(X_DIGITS, Y_DIGITS, **params)


def test_nan_and_length_mismatch_raise():
    X = X_DIGITS.copy()
    X[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EpisodeSampler(X, Y_DIGITS, n_way=2, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="1797 samples but y has 1796"):
        EpisodeSampler(X_DIGITS, Y_DIGITS[:-1], n_way=2, k_shot=1, n_query=1)


def test_endless_sampler_has_no_length_but_yields():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=2, k_shot=1, n_query=1, random_state=0)
    with pytest.raises(TypeError, match="endless"):
        len(sampler)
    iterator = iter(sampler)
    assert all(isinstance(next(iterator), Task) for _ in range(100))


def test_string_labels_are_kept_in_classes():
    y = np.array(["a", "b", "c"])[Y_DIGITS % 3]
    task = next(iter(EpisodeSampler(X_DIGITS, y, n_way=3, k_shot=1, n_query=1, random_state=0)))
    assert sorted(task.classes.tolist()) == ["a", "b", "c"]


def test_rotations_make_new_classes_of_rotated_images():
    image = torch.arange(9.0).reshape(1, 3, 3)
    X, y = rotate_classes()(image.reshape(1, 9), torch.tensor([0]))
    assert y.tolist() == [0, 1, 2, 3]
    for k in range(4):
        torch.testing.assert_close(X[k].reshape(3, 3), torch.rot90(image[0], k))


def test_rotated_classes_are_sampled_with_original_labels():
    sampler = EpisodeSampler(X_DIGITS, Y_DIGITS, n_way=5, k_shot=1, n_query=1, n_tasks=1,
                             augment=rotate_classes(image_shape=(8, 8)), random_state=0)
    assert sampler.n_classes_ == 40
    assert sampler.classes_.tolist() == list(range(10)) * 4


def test_rotate_classes_rejects_non_square_and_odd_angles():
    with pytest.raises(ValueError, match="multiples of 90"):
        rotate_classes((45,))
    with pytest.raises(ValueError, match="cannot view 10 features"):
        rotate_classes()(torch.zeros(2, 10), torch.tensor([0, 1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_non_finite_check_agrees_with_torch_for_every_float_type(dtype):
    from skmeta.utils._torch import has_non_finite

    for bad, allow_nan, expected in [(None, False, False), (float("nan"), False, True), (float("nan"), True, False),
                                     (float("inf"), True, True), (-float("inf"), False, True)]:
        values = torch.ones(3, 4, dtype=dtype)
        if bad is not None:
            values[1, 2] = bad
        assert has_non_finite(values, allow_nan) is expected
        assert has_non_finite(values.t(), allow_nan) is expected  # not contiguous


# ----------------------------------------------------------------------
# random_affine: per-episode distortions of the examples


def _stroke_images(n=6, side=28):
    X = torch.zeros(n, side, side)
    X[:, 8:20, 12:15] = 1.0  # a vertical bar, away from the border
    X[:, 18:20, 8:20] = 1.0  # and a foot
    return X


@pytest.mark.parametrize("shape", [(6, 784), (6, 28, 28), (6, 1, 28, 28), (6, 2, 28, 28)])
def test_random_affine_keeps_the_shape_and_with_zero_magnitudes_the_images(shape):
    X = torch.rand(*shape)
    generator = torch.Generator().manual_seed(0)
    still = random_affine(rotation=0, shift=0, scale=0, shear=0)(X, generator)
    assert still.shape == X.shape
    torch.testing.assert_close(still, X, atol=1e-5, rtol=0)
    moved = random_affine()(X, generator)
    assert moved.shape == X.shape and not torch.allclose(moved, X)


def test_random_affine_shifts_by_at_most_the_given_fraction():
    X = _stroke_images(n=50)
    out = random_affine(rotation=0, shift=0.1, scale=0, shear=0)(X, torch.Generator().manual_seed(1))
    grid = torch.arange(28.0)

    def centre(images):
        mass = images.sum((1, 2))
        return torch.stack([(images.sum(2) * grid).sum(1) / mass, (images.sum(1) * grid).sum(1) / mass], 1)

    moved = (centre(out) - centre(X)).abs()
    assert moved.max() <= 0.1 * 28 + 0.5  # a tenth of the width, plus interpolation
    assert moved.max() > 1.0  # and it does move them
    # A shift inside the image keeps the strokes whole.
    torch.testing.assert_close(out.sum((1, 2)), X.sum((1, 2)), rtol=0.02, atol=0)


@settings(max_examples=25, deadline=None)
@given(rotation=st.floats(0, 45), shift=st.floats(0, 0.3), scale=st.floats(0, 0.5), shear=st.floats(0, 0.5),
       seed=st.integers(0, 2**31))
def test_random_affine_output_stays_within_the_input_range(rotation, shift, scale, shear, seed):
    # Bilinear resampling with border padding mixes input pixels only.
    X = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(seed)) * 5 - 1
    out = random_affine(rotation, shift, scale, shear)(X, torch.Generator().manual_seed(seed))
    assert torch.isfinite(out).all()
    for image, source in zip(out, X):
        assert source.min() - 1e-5 <= image.min() and image.max() <= source.max() + 1e-5


def test_sampler_transform_is_seeded_new_every_pass_and_keeps_labels():
    X, y = _stroke_images(n=40), np.repeat(np.arange(10), 4)
    X = X * torch.arange(1, 41).reshape(-1, 1, 1)  # each example its own intensity

    def sampler(seed):
        return EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_tasks=4, transform=random_affine(),
                              random_state=seed)

    first, again = list(sampler(0)), list(sampler(0))
    plain = list(EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_tasks=4, random_state=0))
    for a, b, c in zip(first, again, plain):
        torch.testing.assert_close(a.X_support, b.X_support)
        torch.testing.assert_close(a.X_query, b.X_query)
        # The same examples as without the transform, distorted.
        assert torch.equal(a.y_support, c.y_support) and torch.equal(a.y_query, c.y_query)
        torch.testing.assert_close(a.X_support.amax((1, 2)), c.X_support.amax((1, 2)), rtol=0.02, atol=0)
        assert not torch.allclose(a.X_support, c.X_support)
    stream = sampler(0)
    one, two = next(iter(stream)), next(iter(stream))
    assert not torch.allclose(one.X_support, two.X_support)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rotation=-1), ValueError, "rotation"),
    (dict(shift=float("nan")), ValueError, "shift"),
    (dict(scale=1.0), ValueError, "scale"),
    (dict(shear=float("inf")), ValueError, "shear"),
])
def test_random_affine_rejects_bad_magnitudes(kwargs, error, message):
    with pytest.raises(error, match=message):
        random_affine(**kwargs)


def test_random_affine_rejects_what_is_not_an_image():
    with pytest.raises(ValueError, match="image_shape"):
        random_affine()(torch.zeros(3, 10), torch.Generator())
    with pytest.raises(TypeError, match="transform must be callable"):
        EpisodeSampler(torch.zeros(8, 4), np.repeat([0, 1], 4), n_way=2, k_shot=1, n_query=1, transform=3)
