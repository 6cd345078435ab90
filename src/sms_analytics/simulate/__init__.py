"""Simulators: the providers' own services (aliyun.py, kx.py, mns.py, tencent.py; lane.py sends through
them) and the push-lane traffic against our HTTP receivers (traffic.py: payloads/, scenarios.py,
plan.py, driver.py)."""
