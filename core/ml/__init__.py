"""Filled by the protect/restore and clinical-AI capabilities."""
