"""Provider-side stand-ins for runs and tests: the provider APIs as local servers (`aliyun.py`,
`tencent.py`, `kx.py`, Alibaba's MNS queue in `mns.py`), the traffic that posts provider pushes to our
receivers, and the lane that sends through the real clients and collects receipts the ways each
provider offers (`lane.py`). Nothing here is part of the pipeline.

The pushed traffic, each part imported from where it is defined:

* `payloads/`: one module a provider (aliyun 000, kx 001, tencent 002) with the seed documents'
  codes and the pure body builders (`aliyun_send`, `tencent_status`, `kx_report`, ...), and what
  they share (`payloads/common.py`: endpoint paths, carriers' number segments, China time);
* `scenarios.py`: the switches `Outage` and `Blackout`, `parse_scenario`;
* `plan.py`: the traffic model, `plan_traffic` (a seed into a deterministic schedule), and the
  weighted draws `pick` / `pick_long` that bench/workload.py shares;
* `driver.py`: `drive` posts a plan and returns the `GroundTruth` (`sms-analytics simulate`).

Provider names and the 70/67 billing rule are `sms_analytics.model.providers`'.
"""
