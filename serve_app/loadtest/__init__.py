"""`faceserve loadtest`: SLA profiles (sla.py) run with locust (runner.py) on real photos
(photos.py) against a seeded collection (seed.py), with faults injected mid-run (faults.py),
judged from locust's CSV (results.py) and reported as tables and charts (report.py, chart.py).

The scenarios themselves live in `loadtests/locustfile.py`; traffic.py is what they share
with the runner. Nothing here imports locust or matplotlib at module level: without the
`loadtest` extra, the CLI says what to install.
"""
