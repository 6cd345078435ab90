"""Long-lived pull feeds (pollers, queue consumers): one module per provider, one base class."""
