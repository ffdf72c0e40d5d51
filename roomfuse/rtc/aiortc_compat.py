"""Every place roomfuse reaches past aiortc's (and aioice's) public API, in one module.

Four things roomfuse needs that aiortc does not offer:

* ``make_prompt``: a video receiver that hands a frame to its decoder at the frame's
  last packet (the RTP marker bit), not one frame period later. Swaps the receiver's
  private jitter buffer (``RTCRtpReceiver.__jitter_buffer``) for ``PromptJitterBuffer``,
  a subclass that reads the buffer's private slots.
* ``make_prompt_audio``: an audio receiver that hands a packet on once the next one is
  in, not four later. Swaps the same private buffer for a ``JitterBuffer`` with no
  prefetch.
* ``route_sender_feedback``: a sender that does not encode (the room encodes once for
  every viewer) still hears its viewer's picture-loss reports and bandwidth estimates.
  Wraps the sender's private ``_send_keyframe`` and ``_handle_rtcp_packet`` and reads
  its ``_ssrc``.
* ``replace_host_addresses``: which local addresses ICE offers. Replaces aioice's
  module-level ``aioice.ice.get_host_addresses`` (looked up at gathering time).

Each hook checks that what it touches is there and returns False, changing nothing,
where it is not, so an aiortc that moved its internals degrades to aiortc's own
behaviour (a frame period more latency, no bitrate adaptation) instead of failing.
``TESTED`` is the aiortc range whose internals tests/test_aiortc_compat.py has passed
against; pyproject.toml pins aiortc to it, and ``untested_version`` says when the
installed one is outside it.
"""
from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

log = logging.getLogger(__name__)

# aiortc versions whose internals the hooks below were tested against (lowest
# included, highest excluded); pyproject.toml's requirement says the same.
TESTED = ((1, 13), (1, 17))
REQUIREMENT = "aiortc>=1.13,<1.17"

_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"  # name-mangled RTCRtpReceiver.__jitter_buffer


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits or digits != piece:
            break
        parts.append(int(digits))
    return tuple(parts)


def untested_version() -> str | None:
    """A one-line warning when the installed aiortc is outside ``TESTED``, else None."""
    try:
        installed = version("aiortc")
    except PackageNotFoundError:
        return "aiortc is not installed"
    low, high = TESTED
    if low <= _release(installed)[:2] < high:
        return None
    return (f"aiortc {installed} is outside the versions roomfuse was tested with ({REQUIREMENT}); "
            "if rooms lag or ignore bandwidth, install a tested one")


# ---- receiving: a frame at its last packet -------------------------------------------

class PromptJitterBuffer(JitterBuffer):
    """aiortc's video receive buffer, also closing a frame at its marker bit (RTP marks
    the last packet of each video frame) instead of only when the next frame begins."""

    def __init__(self, capacity: int = 512):
        super().__init__(capacity=capacity, is_video=True)

    def _remove_frame(self, sequence_number: int):
        frame = super()._remove_frame(sequence_number)
        if frame is not None:
            return frame
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None  # a packet is still missing (a NACK may bring it)
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets), timestamp=packet.timestamp)
        return None


def make_prompt(receiver) -> bool:
    """Let ``receiver`` (an aiortc RTCRtpReceiver for video, before any packet arrives)
    hand each frame to its decoder as soon as the frame's last packet is in.

    aiortc's receive buffer closes a frame only when the first packet of the next one
    arrives, which holds every frame for one more frame period (33 ms at 30 fps) before
    it is even decoded. Returns False, changing nothing, where aiortc keeps its buffer
    elsewhere.
    """
    old = getattr(receiver, _RECEIVER_BUFFER, None)
    if type(old) is not JitterBuffer or not getattr(old, "_is_video", False):
        return False
    if not all(hasattr(old, a) for a in ("_packets", "_origin", "_capacity", "remove")):
        return False
    setattr(receiver, _RECEIVER_BUFFER, PromptJitterBuffer(old.capacity))
    return True


def make_prompt_audio(receiver) -> bool:
    """Let ``receiver`` (an aiortc RTCRtpReceiver for audio, before any packet arrives)
    hand each sound packet on once the next one is in (20 ms), not four later (80 ms).

    The room holds each voice in its own buffer for as long as it needs (``audio.Inbox``:
    jitter, and waiting for the picture), so aiortc's extra 60 ms would only make sound
    later. Returns False, changing nothing, where aiortc keeps its buffer elsewhere.
    """
    old = getattr(receiver, _RECEIVER_BUFFER, None)
    if type(old) is not JitterBuffer or getattr(old, "_is_video", True):
        return False
    setattr(receiver, _RECEIVER_BUFFER, JitterBuffer(capacity=old.capacity, prefetch=0))
    return True


# ---- sending: feedback to an encoder the sender does not own --------------------------

def route_sender_feedback(sender, on_picture_loss, on_bitrate) -> bool:
    """Have ``sender`` (an aiortc RTCRtpSender) call ``on_picture_loss()`` for each
    picture-loss report (PLI/FIR) and ``on_bitrate(bits_per_s)`` for each bandwidth
    estimate (REMB) its viewer sends about it, besides what it does itself.

    aiortc's sender acts on both only when it encodes itself. Returns False, changing
    nothing, where the sender lacks the methods this wraps."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

    send_keyframe = getattr(sender, "_send_keyframe", None)
    handle_rtcp = getattr(sender, "_handle_rtcp_packet", None)
    if not callable(send_keyframe) or not callable(handle_rtcp) or not hasattr(sender, "_ssrc"):
        return False

    def picture_loss():
        send_keyframe()
        on_picture_loss()

    async def rtcp(packet):
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    on_bitrate(bitrate)
        await handle_rtcp(packet)

    sender._send_keyframe = picture_loss
    sender._handle_rtcp_packet = rtcp
    return True


# ---- ICE: which addresses are offered --------------------------------------------------

def replace_host_addresses(lookup):
    """Make every ICE agent in this process gather the addresses ``lookup(use_ipv4,
    use_ipv6)`` returns. Returns a function that restores aioice's own lookup."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lookup

    def restore() -> None:
        if aioice.ice.get_host_addresses is lookup:
            aioice.ice.get_host_addresses = original

    return restore


def parse_stun_turn_uri(uri: str) -> dict:
    """aiortc's parser for STUN/TURN URIs (an internal helper); raises ValueError."""
    from aiortc.rtcicetransport import parse_stun_turn_uri as parse

    return parse(uri)
