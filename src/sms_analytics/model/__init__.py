"""The pipeline's shared vocabulary: events on the topics, phone numbers, times, failure classes."""
