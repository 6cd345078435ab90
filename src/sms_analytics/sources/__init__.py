"""Provider payloads in, events out. Where this ends: events on the input topics (sources never
import streams, sinks or dashboards).

- `base/`: the extension points: the provider contract (`base/provider.py`: how bodies become events,
  how a provider is answered, its callback paths and pull feeds), the readers every parser reads a
  hostile body with, and the parse results (`base/fields.py`), and the pull feed's loop with its
  checkpoint, rate limit and backoff (`base/feed.py`).
- one package per provider, `aliyun/`, `tencent/`, `kx/`: its parsers (`parsers.py`), its API client
  (`client.py`) and its pull feeds (`feeds.py`; Alibaba's MNS queue consumer in `aliyun/mns.py`).
- `providers.py`: the registry, one line a provider; the receiver's routes and the running feeds
  follow from it. The provider names themselves, and the 70/67 billing rule, are
  `sms_analytics.model.providers`'.
- `receiver.py`: the aiohttp app: provider pushes on `/callbacks/<provider>/<path>` and our own
  `/v1/sends` (`normalized.py`: normalized send records) and `/v1/sends/<provider>`, with the
  size, record, timestamp, allowlist and token checks.
- `feeds.py`: which pull feeds run; `compensation.py`: the feed that asks providers about messages
  still pending.
- the two publishers: Kafka (`producer.py`, acknowledged before the HTTP answer) and, in embedded
  `up`, the SQLite journal in front of it (`journal.py`)."""
