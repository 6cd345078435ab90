"""The pipeline's shared vocabulary, free of I/O: events on the topics (`events.py`), topic names and
the message key (`topics.py`), the providers, carriers and segment rule (`providers.py`), phone
numbers (`phone.py`), times and durations (`times.py`), addresses (`addresses.py`), the failure
taxonomy (`taxonomy.py`) and the error-code knowledge base (`knowledge.py`, `error_codes.csv`)."""
