"""sms-analytics: SMS delivery analytics."""
