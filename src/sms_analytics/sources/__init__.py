"""Provider payloads in, events out. Where this ends: events on the input topics (sources never
import streams, sinks or dashboards).

- `base/`: the extension points: the provider contract (`base/provider.py`), the field readers every
  parser reads a body with (`base/fields.py`) and the pull feed's loop (`base/feed.py`).
- one package per provider (`aliyun/`, `tencent/`, `kx/`): its parsers, its API client and its pull
  feeds; `providers.py` registers them, one line each.
- `receiver.py`: the aiohttp app (provider pushes and our `/v1/sends`); `normalized.py`: `/v1/sends`.
- `feeds.py`: which pull feeds run; `compensation.py`: the feed that asks providers about pending
  messages.
- the two publishers: Kafka (`producer.py`) and, in embedded `up`, the journal in front of it
  (`journal.py`)."""
