"""Model packs. The registry (name -> pack class) is in `serve_app.vision.packs.registry`."""
