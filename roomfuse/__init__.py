"""roomfuse: everyone in a video call, in one room made of their real rooms."""

__version__ = "0.1.0"
