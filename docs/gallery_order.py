"""The order of the gallery: the quick start first, then evaluation, the
families, tabular data and the tools around meta-training. Examples not
listed come last, by file name."""

ORDER = [
    "plot_quickstart.py",
    "plot_episodic_evaluation.py",
    "plot_compare_learners.py",
    "plot_learning_curves.py",
    "plot_embeddings.py",
    "plot_sinusoid_adaptation.py",
    "plot_grid_search_adaptation.py",
    "plot_mann_accuracy_by_instance.py",
    "plot_tabular_metapipeline.py",
    "plot_tabular_cross_dataset.py",
    "plot_checkpoints.py",
]


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        return (ORDER.index(filename) if filename in ORDER else len(ORDER), filename)

    def __repr__(self):
        # sphinx-gallery compares configurations by repr to decide on rebuilds.
        return f"<{type(self).__name__}>"
