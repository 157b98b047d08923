"""The kernel client ``run_notebooks`` uses never waits on one long poll for a kernel message.

pyzmq's asyncio poll can miss the wake-up for a message that has already
arrived; the notebook run then sat with an idle kernel until the cell's time
limit (or for ever without one), after explorer cells. ``PollingChannel``
polls again in short slices, so a message that one poll missed is found by the
next. These tests drive it with a stand-in socket whose first poll misses the
queued message, the way pyzmq's did.
"""
import asyncio
from queue import Empty

import pytest
import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from vlmscope.notebooks import (PollingChannel, PollingKernelClient, PollingKernelManager,
                                run_notebooks)


class MissedWakeup:
    """A socket holding one message; the first ``missed`` polls do not see it."""

    def __init__(self, frames, missed: int = 1):
        self.frames, self.missed, self.polls = frames, missed, []

    async def poll(self, timeout=None):
        self.polls.append(timeout)
        if len(self.polls) <= self.missed or self.frames is None:
            return 0
        return zmq.POLLIN

    async def recv_multipart(self, **kw):
        frames, self.frames = self.frames, None
        return frames


def _channel(cls, socket):
    ctx = zmq.asyncio.Context()
    channel = cls(ctx.socket(zmq.DEALER), Session(key=b""))
    channel.socket.close(linger=0)
    ctx.term()
    channel.socket = socket
    return channel


def _reply_frames(session):
    msg = session.msg("execute_reply", {"status": "ok"}, parent={"msg_id": "cell-1"})
    return session.serialize(msg)


def test_a_reply_one_poll_missed_is_found_by_the_next_poll():
    session = Session(key=b"")
    socket = MissedWakeup(_reply_frames(session), missed=2)
    channel = _channel(PollingChannel, socket)
    channel.slice_s = 0.01
    msg = asyncio.run(channel.get_msg(timeout=None))  # no time limit, as run_notebooks by default
    assert msg["msg_type"] == "execute_reply" and msg["parent_header"]["msg_id"] == "cell-1"
    assert len(socket.polls) == 3
    assert all(t is not None and t <= 10 for t in socket.polls), socket.polls


def test_the_stock_channel_misses_it_which_is_why_run_notebooks_does_not_use_it():
    """The same socket defeats jupyter_client's own channel: its one poll has no end, and
    once it returns empty-handed the message is given up (a hang, or a timeout, in real life)."""
    socket = MissedWakeup(_reply_frames(Session(key=b"")), missed=1)
    channel = _channel(AsyncZMQSocketChannel, socket)
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=None))
    assert socket.polls == [None]


def test_a_time_limit_still_ends_the_wait_with_empty():
    socket = MissedWakeup(None)  # nothing ever arrives
    channel = _channel(PollingChannel, socket)
    channel.slice_s = 0.01
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0.05))
    assert len(socket.polls) >= 1 and all(t <= 10 for t in socket.polls)
    socket.polls.clear()
    with pytest.raises(Empty):
        asyncio.run(channel.get_msg(timeout=0))  # a zero limit asks once, without waiting
    assert socket.polls == [0]


def test_run_notebooks_hands_papermill_the_polling_kernel_client(tmp_path, monkeypatch):
    import papermill as pm

    seen = {}
    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, parameters, **kw: seen.update(kw))
    run_notebooks(out=tmp_path, only=["01"], progress=False)
    km = seen["kernel_manager_class"]()
    assert km.client_factory is PollingKernelClient
    client = km.client()
    assert client.shell_channel_class is PollingChannel
    assert client.iopub_channel_class is PollingChannel
    assert isinstance(km, AsyncKernelManager) and type(km) is PollingKernelManager
