"""Provider payloads in, events out: the HTTP receivers (`http.py`, one parser module per provider),
the pull feeds (`feeds/`) with the providers' SDK clients (`*_client.py`), Alibaba's MNS queue
consumer (`aliyun_mns.py`), and the two publishers: Kafka (`publisher.py`) and, in embedded `up`, the
journal in front of it (`journal.py`). Where this ends: events on the input topics."""
