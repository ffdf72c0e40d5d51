"""The hooks into aiortc's internals (roomfuse/rtc/aiortc_compat.py), each against the
installed aiortc, and the version range they were tested with, as pyproject.toml pins it.

To test another aiortc release without touching the environment:
    pip install --no-deps --target /tmp/aiortc-X aiortc==X
    PYTHONPATH=/tmp/aiortc-X:. python -m pytest tests/test_aiortc_compat.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from roomfuse.rtc import aiortc_compat
from roomfuse.rtc.aiortc_compat import PromptJitterBuffer, make_prompt, make_prompt_audio, route_sender_feedback

from rtc_util import run

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]


def _transport():
    from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
    from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

    return RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])


def _rtp(seq: int, ts: int, marker: int, data: bytes):
    from aiortc.rtp import RtpPacket

    p = RtpPacket(sequence_number=seq, timestamp=ts)
    p.marker = marker
    p._data = data  # what aiortc's depayloader leaves on each packet
    return p


def test_prompt_buffer_hands_a_frame_on_at_its_last_packet():
    from aiortc.jitterbuffer import JitterBuffer

    arrivals = [_rtp(1, 100, 0, b"a"), _rtp(3, 100, 1, b"c"), _rtp(2, 100, 0, b"b"),  # out of order
                _rtp(4, 200, 1, b"d"), _rtp(6, 300, 1, b"f"), _rtp(5, 300, 0, b"e"),
                _rtp(7, 400, 0, b"g"), _rtp(8, 500, 0, b"h")]  # no marker: the old rule still applies

    def frames(buffer):
        out = []
        for p in arrivals:
            _, f = buffer.add(p)
            out.append((f.data, f.timestamp) if f else None)
        return out

    stock = frames(JitterBuffer(capacity=512, is_video=True))
    prompt = frames(PromptJitterBuffer())
    # aiortc's own buffer waits for the next frame's first packet: one frame later each.
    assert stock == [None, None, None, (b"abc", 100), None, (b"d", 200), (b"ef", 300), (b"g", 400)]
    assert prompt == [None, None, (b"abc", 100), (b"d", 200), None, (b"ef", 300), None, (b"g", 400)]


def test_make_prompt_swaps_a_video_receivers_buffer_only():
    from aiortc import RTCRtpReceiver

    async def main():
        transport = _transport()
        video, audio = RTCRtpReceiver("video", transport), RTCRtpReceiver("audio", transport)
        assert make_prompt(video) and not make_prompt(audio)
        assert type(video._RTCRtpReceiver__jitter_buffer).__name__ == "PromptJitterBuffer"
        assert type(audio._RTCRtpReceiver__jitter_buffer).__name__ == "JitterBuffer"
        await transport.stop()
    run(main, timeout=10)


def test_make_prompt_audio_hands_each_sound_packet_on_after_one_more():
    from aiortc import RTCRtpReceiver

    async def main():
        transport = _transport()
        audio, video = RTCRtpReceiver("audio", transport), RTCRtpReceiver("video", transport)
        assert make_prompt_audio(audio)
        buffer = audio._RTCRtpReceiver__jitter_buffer
        assert type(buffer).__name__ == "JitterBuffer" and buffer._prefetch == 0 and not buffer._is_video
        assert not make_prompt_audio(video)  # video keeps its own (make_prompt)
        assert video._RTCRtpReceiver__jitter_buffer._is_video
        await transport.stop()
    run(main, timeout=10)


def test_sender_feedback_reaches_the_shared_encoder():
    """A picture-loss report and a bandwidth estimate about this sender reach the
    callbacks; an estimate about another stream does not."""
    from aiortc import RTCRtpSender, VideoStreamTrack
    from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

    async def main():
        transport = _transport()
        track = VideoStreamTrack()
        sender = RTCRtpSender(track, transport)
        losses, bitrates = [], []
        assert route_sender_feedback(sender, lambda: losses.append(1), bitrates.append)
        ssrc = sender._ssrc
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                                        fci=pack_remb_fci(640_000, [ssrc])))
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                                        fci=pack_remb_fci(90_000, [ssrc + 1])))
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
        track.stop()
        await transport.stop()
        return losses, bitrates

    losses, bitrates = run(main, timeout=10)
    assert bitrates == [640_000]
    assert losses == [1]  # aiortc's PLI handling calls the wrapped _send_keyframe


def test_hooks_change_nothing_where_the_internals_are_missing():
    class Bare:
        pass

    assert not make_prompt(Bare())
    assert not make_prompt_audio(Bare())
    assert not route_sender_feedback(Bare(), lambda: None, lambda b: None)


def test_installed_aiortc_is_in_the_tested_range_and_pyproject_pins_it():
    assert aiortc_compat.untested_version() is None
    text = (ROOT / "pyproject.toml").read_text()
    assert f'"{aiortc_compat.REQUIREMENT}"' in text, "pyproject.toml's aiortc pin differs from the tested range"
    low, high = aiortc_compat.TESTED
    assert aiortc_compat.REQUIREMENT == f"aiortc>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def test_a_version_outside_the_range_is_named(monkeypatch):
    monkeypatch.setattr(aiortc_compat, "version", lambda name: "1.12.0")
    warning = aiortc_compat.untested_version()
    assert "aiortc 1.12.0" in warning and aiortc_compat.REQUIREMENT in warning and "\n" not in warning
    monkeypatch.setattr(aiortc_compat, "version", lambda name: "2.0.0b1")
    assert "2.0.0b1" in aiortc_compat.untested_version()
