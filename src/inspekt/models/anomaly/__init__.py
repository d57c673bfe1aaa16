"""Anomaly methods trained on normal images only; importing this registers them (see ``base`` for
the contract every method follows)."""

from inspekt.models.anomaly import ae_ssim, draem, padim, patchcore, template  # noqa: F401  (register the methods)
