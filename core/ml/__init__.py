"""Detector (ultralytics YOLO), synthetic training data, and later the clinical models."""
