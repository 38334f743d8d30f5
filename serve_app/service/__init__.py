"""Business operations over the face pipeline: plain Python, no Ray, no HTTP."""
