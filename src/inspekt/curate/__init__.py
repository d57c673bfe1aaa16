"""The data loop above the modes: label issues, near-duplicates and outliers found with inspekt's own
trainer and models (``inspekt data issues``), and what the workbench's Review page needs."""
