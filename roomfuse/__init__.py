"""roomfuse: everyone in a video call, in one room made of their real rooms."""
import os

# BLAS in the calling thread: its spinning workers took a third of two cores' CPU
# (roomfuse/threads.py). Set before numpy is first imported; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
