"""fdatasync without blocking the caller and without a thread: Linux native AIO (``IOCB_CMD_FDSYNC``).

Why: the inline audit writer (gateway/audit/sqlite_inline.py) must make every batch durable before
it answers, and an ``fdatasync`` of the WAL takes 0.1-1 ms (p99 several ms under load). Run on the
event loop it stops every other request for that long; run on a thread it costs a wake-up and an
interpreter-lock hand-over back to the busy loop, which under load took longer than the sync. Linux
has done ``fsync``/``fdatasync`` asynchronously through ``io_submit`` since 4.18 (the kernel runs
it on a worker of its own), and signals the completion on an eventfd that the event loop already
watches like a socket. So: one ``io_submit`` (~6 us here), the loop goes on, and the eventfd's
readiness -- reaped with ``io_getevents`` -- says the sync has returned and with what result.

This module is the small ctypes binding (three syscalls and two structures of ``linux/aio_abi.h``);
it holds no policy. :func:`open_aio_sync` answers ``None`` where the facility is missing (another OS,
another architecture, ``io_setup`` refused by a sandbox, the AIO context limit reached), and the
writer then syncs as before. The completion carries ``fdatasync``'s own result: 0, or a negative
errno, which the writer treats as "not known durable" (503, as a failed synchronous call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import os
import platform
import sys

#: io_setup, io_destroy, io_getevents, io_submit by machine (asm/unistd_64.h; the generic table on arm64)
_SYSCALLS = {"x86_64": (206, 207, 208, 209), "amd64": (206, 207, 208, 209),
             "aarch64": (0, 1, 4, 2), "arm64": (0, 1, 4, 2)}
_IOCB_CMD_FDSYNC = 3
_IOCB_FLAG_RESFD = 1
#: completions reaped per io_getevents call (the writer has one sync in flight; a few spare)
_EVENTS = 8


class _Iocb(ctypes.Structure):
    # struct iocb, little-endian layout (aio_key before aio_rw_flags)
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32), ("aio_rw_flags", ctypes.c_int32),
                ("aio_lio_opcode", ctypes.c_uint16), ("aio_reqprio", ctypes.c_int16),
                ("aio_fildes", ctypes.c_uint32), ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64), ("aio_flags", ctypes.c_uint32),
                ("aio_resfd", ctypes.c_uint32)]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64),
                ("res2", ctypes.c_int64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


assert ctypes.sizeof(_Iocb) == 64 and ctypes.sizeof(_IoEvent) == 32


class AioSync:
    """One kernel AIO context and its eventfd. :meth:`submit` starts an ``fdatasync`` and returns at
    once; when :attr:`eventfd` is readable, :meth:`reap` answers ``(token, result)`` for every sync
    that has returned (``result`` 0 or a negative errno). Single-threaded use (the event loop's)."""

    def __init__(self, libc: ctypes.CDLL, numbers: tuple[int, int, int, int]) -> None:
        self._syscall = libc.syscall
        self._setup, self._destroy, self._getevents, self._submit = numbers
        self._ctx = ctypes.c_ulong(0)
        if self._syscall(self._setup, _EVENTS, ctypes.byref(self._ctx)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"io_setup: {os.strerror(err)}")
        try:
            self.eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            self._syscall(self._destroy, self._ctx)
            raise
        self._cb = _Iocb()
        self._cb.aio_lio_opcode = _IOCB_CMD_FDSYNC
        self._cb.aio_flags = _IOCB_FLAG_RESFD
        self._cb.aio_resfd = self.eventfd
        self._cbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(self._cb))
        self._events = (_IoEvent * _EVENTS)()
        self._zero = _Timespec(0, 0)
        self.in_flight = 0
        self._closed = False

    def submit(self, fd: int, token: int) -> None:
        """Start ``fdatasync(fd)``: it covers every write to ``fd`` that returned before this call.
        Raises OSError when the kernel refuses it (nothing started)."""
        if self._closed:
            raise OSError(_errno.EBADF, "the AIO context is closed")
        cb = self._cb   # the kernel copies the iocb at submission: one can serve every call
        cb.aio_fildes = fd
        cb.aio_data = token
        if self._syscall(self._submit, self._ctx, 1, self._cbs) != 1:
            err = ctypes.get_errno()
            raise OSError(err, f"io_submit(IOCB_CMD_FDSYNC): {os.strerror(err)}")
        self.in_flight += 1

    def reap(self) -> list[tuple[int, int]]:
        """The syncs that have returned, as ``(token, result)``; never blocks."""
        try:
            os.eventfd_read(self.eventfd)
        except BlockingIOError:
            pass
        done: list[tuple[int, int]] = []
        while self.in_flight:
            n = self._syscall(self._getevents, self._ctx, 0, _EVENTS, self._events, ctypes.byref(self._zero))
            if n < 0:
                err = ctypes.get_errno()
                if err == _errno.EINTR:
                    continue
                raise OSError(err, f"io_getevents: {os.strerror(err)}")
            if n == 0:
                break
            for ev in self._events[:n]:
                done.append((int(ev.data), int(ev.res)))
            self.in_flight -= n
        return done

    def close(self) -> None:
        """Destroy the context (the kernel waits for a sync still running) and close the eventfd."""
        if self._closed:
            return
        self._closed = True
        self._syscall(self._destroy, self._ctx)
        os.close(self.eventfd)


def open_aio_sync() -> AioSync | None:
    """An :class:`AioSync`, or ``None`` where Linux native AIO cannot be used here."""
    numbers = _SYSCALLS.get(platform.machine().lower())
    if not sys.platform.startswith("linux") or numbers is None or not hasattr(os, "eventfd"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return AioSync(libc, numbers)
    except (OSError, AttributeError):
        return None
