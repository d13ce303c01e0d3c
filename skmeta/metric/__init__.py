"""Metric-based meta-learners: classify queries by their distance to the
support set in a meta-learned embedding."""

from .protonet import ProtoNetClassifier

__all__ = ["ProtoNetClassifier"]
