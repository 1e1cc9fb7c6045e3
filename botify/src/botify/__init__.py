"""botify: a production-like music recommender service and its offline loop."""

__version__ = "0.1.0"
