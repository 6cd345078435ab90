"""The pipeline watching itself: Prometheus metrics of every process (`metrics.py`), read from the
live stats objects at scrape time, and the health verdict behind `/healthz` (`health.py`).

Kept free of imports here: the publisher and the sink import `deadletters` and `timings`.
"""
