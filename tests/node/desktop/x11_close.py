#!/usr/bin/python3
# Closes a process's window as a window manager does when its close button is
# clicked: a WM_DELETE_WINDOW client message to the top-level X window (GTK
# turns it into delete-event, Tauri into CloseRequested). Under Xvfb there is
# no window manager, so tests and scripts/bench-desktop send it themselves.
# libX11 through ctypes: no package beyond what GTK already needs.
#
#   x11_close.py PID TITLE     prints how many windows it asked to close;
#                              exits 1 if none (with DISPLAY unset, 2)
import ctypes
import ctypes.util
import sys

CLIENT_MESSAGE = 33  # X.h ClientMessage
XA_CARDINAL = 6


class ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("l", ctypes.c_long * 5),
    ]


class Event(ctypes.Union):
    # XEvent is 24 longs whatever the kind.
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]


x = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XDefaultRootWindow.restype = ctypes.c_ulong
x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
x.XInternAtom.restype = ctypes.c_ulong
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 4
x.XGetWindowProperty.argtypes = [
    ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_long, ctypes.c_long,
    ctypes.c_int, ctypes.c_ulong] + [ctypes.c_void_p] * 5
x.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p]
x.XFree.argtypes = [ctypes.c_void_p]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
x.XCloseDisplay.argtypes = [ctypes.c_void_p]


def pid_of(d, w, atom):
    kind, fmt = ctypes.c_ulong(), ctypes.c_int()
    n, after, data = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_void_p()
    if x.XGetWindowProperty(d, w, atom, 0, 1, 0, XA_CARDINAL, ctypes.byref(kind), ctypes.byref(fmt),
                            ctypes.byref(n), ctypes.byref(after), ctypes.byref(data)) != 0:
        return None
    try:
        # Format 32 comes back as C longs.
        return ctypes.cast(data, ctypes.POINTER(ctypes.c_long))[0] if n.value == 1 and fmt.value == 32 else None
    finally:
        if data:
            x.XFree(data)


def name_of(d, w):
    name = ctypes.c_char_p()
    if not x.XFetchName(d, w, ctypes.byref(name)) or not name.value:
        return None
    value = name.value.decode("latin-1")
    x.XFree(name)
    return value


def main():
    pid, title = int(sys.argv[1]), sys.argv[2]
    d = x.XOpenDisplay(None)
    if not d:
        print("cannot open the X display (is DISPLAY set?)", file=sys.stderr)
        return 2
    root = x.XDefaultRootWindow(d)
    net_wm_pid = x.XInternAtom(d, b"_NET_WM_PID", 0)
    protocols = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
    delete = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
    r, p, children, n = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.c_void_p(), ctypes.c_uint()
    x.XQueryTree(d, root, ctypes.byref(r), ctypes.byref(p), ctypes.byref(children), ctypes.byref(n))
    windows = [ctypes.cast(children, ctypes.POINTER(ctypes.c_ulong))[i] for i in range(n.value)]
    if children:
        x.XFree(children)
    closed = 0
    for w in windows:
        if pid_of(d, w, net_wm_pid) != pid or name_of(d, w) != title:
            continue
        ev = Event()
        ev.xclient.type = CLIENT_MESSAGE
        ev.xclient.window = w
        ev.xclient.message_type = protocols
        ev.xclient.format = 32
        ev.xclient.l[0] = delete
        ev.xclient.l[1] = 0  # CurrentTime
        x.XSendEvent(d, w, 0, 0, ctypes.byref(ev))
        closed += 1
    x.XSync(d, 0)
    x.XCloseDisplay(d)
    print(closed)
    return 0 if closed else 1


sys.exit(main())
