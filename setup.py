"""Thin shim so tools that still call setup.py find the pyproject metadata."""
from setuptools import setup

setup()
