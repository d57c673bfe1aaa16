"""The Streamlit workbench (``inspekt app``): one page per job, laid out over the library."""

from pathlib import Path

MAIN = Path(__file__).with_name("main.py")
