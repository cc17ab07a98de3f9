"""dllab: run, study and extend the experiments of IST Deep Learning Homework 2."""

__version__ = "0.1.0"
