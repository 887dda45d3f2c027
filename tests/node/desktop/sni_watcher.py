#!/usr/bin/python3
# A stand-in for the desktop's tray host, so the end-to-end test can read the
# real tray: libayatana-appindicator registers its StatusNotifierItem with
# whoever owns org.kde.StatusNotifierWatcher, and under dbus-run-session
# nothing does. Run with Debian's /usr/bin/python3 (python3-dbus, python3-gi)
# on the app's session bus; tray.mjs starts it.
#
# Protocol: prints {"ready": true} once it owns the name; for each "dump" line
# on stdin prints one JSON line with every registered item's properties and
# menu labels; for "click LABEL" clicks the one item's menu entry shown as
# LABEL, as a tray host does when the user picks it, and prints
# {"clicked": id} (or {"error": ...}). Exits when stdin closes, so it never
# outlives the test.
import json
import re
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

WATCHER = "org.kde.StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
PROPS = "org.freedesktop.DBus.Properties"


def plain(v):
    """DBus values as JSON; icon pixmaps (byte arrays) only as their size."""
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def shown(label):
    """A dbusmenu label as a host shows it: "__" is one underscore, a single
    "_" marks the access key and is not shown."""
    return re.sub(r"_(_?)", r"\1", str(label))


def find(node, label):
    """The id of the first entry of a dbusmenu layout shown as `label`."""
    for child in node[2]:
        if shown(child[1].get("label", "")) == label:
            return int(child[0])
        found = find(child, label)
        if found is not None:
            return found
    return None


def labels(node):
    """A dbusmenu layout (id, props, children) as labels top to bottom, like
    the app's TrayModel.menu: separators as "-", hidden items left out."""
    out = []
    _, _, children = node
    for child in children:
        _, p, _ = child
        if not p.get("visible", True):
            continue
        out.append("-" if p.get("type") == "separator" else shown(p.get("label", "")))
        out.extend(labels(child))
    return out


class Watcher(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, "/StatusNotifierWatcher")
        self.bus = bus
        self.items = {}  # "sender/path" -> (bus name, object path)
        # An item whose process ends is dropped, as a real watcher does (the
        # test starts a second instance of the app that exits at once).
        bus.add_signal_receiver(self.owner_changed, "NameOwnerChanged", "org.freedesktop.DBus")

    def owner_changed(self, name, old, new):
        for key, (owner, _) in list(self.items.items()):
            if owner == name and not new:
                del self.items[key]
                self.StatusNotifierItemUnregistered(key)

    # appindicator passes its object path; other libraries pass a bus name.
    @dbus.service.method(WATCHER, in_signature="s", sender_keyword="sender")
    def RegisterStatusNotifierItem(self, service, sender):
        owner, path = (sender, service) if service.startswith("/") else (service, "/StatusNotifierItem")
        self.items[owner + path] = (owner, path)
        self.StatusNotifierItemRegistered(owner + path)

    # The test is the host; this is here for libraries that register one.
    @dbus.service.method(WATCHER, in_signature="s")
    def RegisterStatusNotifierHost(self, service):
        self.StatusNotifierHostRegistered()

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemRegistered(self, key):
        pass

    @dbus.service.signal(WATCHER, signature="s")
    def StatusNotifierItemUnregistered(self, key):
        pass

    @dbus.service.signal(WATCHER)
    def StatusNotifierHostRegistered(self):
        pass

    # Items read these to decide whether a host will show them.
    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return {
            "RegisteredStatusNotifierItems": dbus.Array(list(self.items), signature="s"),
            "IsStatusNotifierHostRegistered": True,
            "ProtocolVersion": dbus.Int32(0),
        }

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        return self.GetAll(interface)[name]

    def dump(self):
        out = []
        for key, (owner, path) in self.items.items():
            seen = {"item": key}
            try:
                obj = self.bus.get_object(owner, path, introspect=False)
                seen.update(plain(obj.GetAll(ITEM, dbus_interface=PROPS, byte_arrays=True, timeout=5)))
                menu = self.bus.get_object(owner, seen["Menu"], introspect=False)
                revision, layout = menu.GetLayout(0, -1, dbus.Array([], signature="s"),
                                                  dbus_interface="com.canonical.dbusmenu", timeout=5)
                seen["menu"] = labels(layout)
                seen["menu_revision"] = int(revision)
            except dbus.DBusException as e:
                seen["error"] = str(e)
            out.append(seen)
        return {"items": out}

    def click(self, label):
        if len(self.items) != 1:
            return {"error": f"{len(self.items)} tray items registered, expected one"}
        owner, path = next(iter(self.items.values()))
        try:
            obj = self.bus.get_object(owner, path, introspect=False)
            menu_path = obj.Get(ITEM, "Menu", dbus_interface=PROPS, timeout=5)
            menu = self.bus.get_object(owner, menu_path, introspect=False)
            _, layout = menu.GetLayout(0, -1, dbus.Array([], signature="s"),
                                       dbus_interface="com.canonical.dbusmenu", timeout=5)
            entry = find(layout, label)
            if entry is None:
                return {"error": f"no menu entry {label!r}: {labels(layout)}"}
            menu.Event(dbus.Int32(entry), "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(0),
                       dbus_interface="com.canonical.dbusmenu", timeout=5)
            return {"clicked": entry}
        except dbus.DBusException as e:
            return {"error": str(e)}


def on_stdin(source, condition):
    line = sys.stdin.readline()
    if not line:  # the test ended (or died): stop.
        loop.quit()
        return False
    if line.strip() == "dump":
        print(json.dumps(watcher.dump()), flush=True)
    elif line.startswith("click "):
        print(json.dumps(watcher.click(line[len("click "):].rstrip("\n"))), flush=True)
    return True


DBusGMainLoop(set_as_default=True)
session = dbus.SessionBus()
watcher = Watcher(session)
# Owning the name is what makes appindicator register with us; fail if taken.
name = dbus.service.BusName(WATCHER, session, do_not_queue=True)
loop = GLib.MainLoop()
GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, on_stdin)
print(json.dumps({"ready": True}), flush=True)
loop.run()
