"""Converters that turn shipped model weights into ONNX files (run once, never per request)."""
