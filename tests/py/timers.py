"""A periodic timerfd and a signalfd, both watched by epoll: after a
restart the timer still fires with its period and the signalfd still
receives the signal it was made for."""
import ctypes
import os
import select
import signal
import struct
import sys

steps, sleep_ms = int(sys.argv[1]), int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)


class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class Itimerspec(ctypes.Structure):
    _fields_ = [("interval", Timespec), ("value", Timespec)]


tfd = libc.timerfd_create(1, 0)  # CLOCK_MONOTONIC
period = Timespec(0, sleep_ms * 1000000)
libc.timerfd_settime(tfd, 0, ctypes.byref(Itimerspec(period, period)), None)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
mask = ctypes.c_uint64(1 << (signal.SIGUSR1 - 1))
sfd = libc.signalfd(-1, ctypes.byref(mask), 0)
assert tfd >= 0 and sfd >= 0
ep = select.epoll()
ep.register(tfd, select.EPOLLIN)
ep.register(sfd, select.EPOLLIN)
signals = 0
for i in range(steps):
    if i % 5 == 0:
        os.kill(os.getpid(), signal.SIGUSR1)
    fired = set()
    while "timer" not in fired:
        for fd, _ in ep.poll(5):
            if fd == tfd:
                os.read(tfd, 8)
                fired.add("timer")
            elif fd == sfd:
                info = os.read(sfd, 128)
                signals += struct.unpack_from("I", info)[0] == signal.SIGUSR1
    print(f"step {i} timer fired, signals via signalfd {signals}", flush=True)
print(f"done {signals}", flush=True)
