"""Traffic simulator: drives our HTTP receivers with provider-format traffic."""
