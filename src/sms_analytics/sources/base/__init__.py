"""The base classes of the sources: one per extension point, the implementations live beside this
package (one package per provider). `provider.py`: how a provider's bodies become events and how it
is answered; `fields.py`: the readers every parser reads hostile input with, and the parse results;
`feed.py`: a pull feed's loop (checkpoint, rate limit, backoff, metrics)."""
