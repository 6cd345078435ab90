"""The Kafka brokers and the topics on them: the embedded broker of `up` (Tansu, memory storage:
`embedded.py`), the Apache Kafka single node the tests also run on (`apache.py`), and topic creation
with one partition count and explicit configs (`admin.py`). Topic names and the message key are in
model/topics.py; the producers belong to the stages (sources/producer.py, the faust app). Where this
ends: a broker that answers, with the topics made."""
