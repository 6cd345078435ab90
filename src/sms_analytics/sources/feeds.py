"""Which pull feeds run: each registered provider's configured feeds (`Provider.build_feeds`), and
the compensation feed when a configured provider can be asked about a pending message. Where this
ends: what a provider's feeds are, and when they are on, is its own package's business."""

from __future__ import annotations

from sms_analytics.settings import Settings
from sms_analytics.sources.base.feed import Closes, Publish, Runnable, feed_options
from sms_analytics.sources.base.fields import Identities
from sms_analytics.sources.compensation import Compensator
from sms_analytics.sources.providers import REGISTERED


def build_feeds(settings: Settings, ids: Identities, publish: Publish,
                bootstrap: str) -> tuple[list[Runnable], list[Closes]]:
    """The feeds to run, and the clients to close when they stop."""
    sets = {provider.name: provider.build_feeds(settings, ids, publish) for provider in REGISTERED}
    feeds = [feed for feed_set in sets.values() for feed in feed_set.feeds]
    closers = [client for feed_set in sets.values() for client in feed_set.closers]
    askers = {name: feed_set.compensation for name, feed_set in sets.items() if feed_set.compensation is not None}
    if askers:
        feeds.append(Compensator(bootstrap, f"{settings.sms_app_id}-compensation", publish, askers=askers,
                                 **feed_options(settings)))
    return feeds, closers
