"""What the FaceCollection operator decides, as plain Python over the store (no kopf here).

`operator/handlers.py` is the thin kopf adapter: it parses the resource with `spec`, calls
`Reconciler`, and turns its `Outcome` into status conditions and kopf's retry errors.
"""
