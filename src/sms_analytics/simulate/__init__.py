"""Provider-side stand-ins for runs and tests: the provider APIs as local servers (`aliyun.py`,
`tencent.py`, `kx.py`, Alibaba's MNS queue in `mns.py`), the traffic that posts provider pushes to our
receivers (`traffic.py` gathers `payloads/`, `scenarios.py`, `plan.py` and `driver.py`) and the lane
that sends through the real clients and collects receipts the ways each provider offers (`lane.py`).
Nothing here is part of the pipeline."""
