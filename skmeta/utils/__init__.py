"""Tools for people who build on skmeta: estimator checks of the meta-learning contract."""
