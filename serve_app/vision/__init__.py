"""The pure face pipeline: numpy in, numpy out. No Ray, no HTTP, no storage."""
