"""roomfuse: everyone in a video call, in one room made of their real rooms."""
import os

# numpy's OpenBLAS keeps its worker threads spinning on sched_yield for a long while after
# every call, and the frame path makes a small solve each frame (the harmoniser's gains):
# on two cores that spinning took a third of the CPU (30 000 context switches a second).
# roomfuse parallelises its frames itself; BLAS runs in the calling thread. Set before
# numpy is first imported; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
