"""Datasets: layout detection, dataset reports, splits and inspekt's own synthetic data."""

from inspekt.data.dataset import NORMAL_NAMES, SPLITS, Box, Dataset, Sample
from inspekt.data.layouts import open_dataset

__all__ = ["NORMAL_NAMES", "SPLITS", "Box", "Dataset", "Sample", "open_dataset"]
