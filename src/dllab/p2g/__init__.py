"""Phoneme-to-spelling (2024-25 homework 2, question 3): data, experiments, CLI, benchmark, report."""
