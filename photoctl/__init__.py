"""photoctl: ingest event photos into a durable queue, process them with workers, serve them."""

__version__ = "0.1.0"
