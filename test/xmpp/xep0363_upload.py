#!/usr/bin/env python3
"""A real XMPP client for the XEP-0363 end-to-end tests (slixmpp).

It logs in to an XMPP server over plain TCP, discovers the upload services of
its domain (disco#items + disco#info), picks the one named by --service,
requests a slot for every file of the --files list and PUTs the file:

  via "helper": slixmpp's own XEP-0363 helper (upload_file: slot request,
                then an aiohttp PUT with the slot's headers), as a slixmpp
                based client or bot uploads;
  via "http":   the slot request is built by hand (the content-type attribute
                is left out when the file has no type) and the PUT is sent
                with http.client: Content-Length, Content-Type only when the
                file has a type, and the headers the slot asks for;
  via "slot":   the slot request of "http" without the PUT: the slot is
                reported (status null) for the caller to use as it likes.

--files is a JSON file: [{"path": ..., "type": "image/jpeg" | null,
"via": "helper" | "http" | "slot"}, ...]; the slot's file name is the base name of
path. The result is one JSON line on stdout:

  {"ok": true, "service": {"jid", "identities", "features", "max_file_size"},
   "uploads": [{"name", "size", "type", "via", "put_url", "put_headers",
                "get_url", "status", "body"}, ...]}

or {"ok": false, "error": "..."} (exit status 1). An upload that gets an HTTP
error is reported with its status; the caller judges the codes.
"""

import argparse
import asyncio
import http.client
import json
import logging
import os
import sys
import urllib.parse

import slixmpp
from slixmpp.plugins.xep_0363.http_upload import HTTPError

UPLOAD_NS = "urn:xmpp:http:upload:0"


class Uploader(slixmpp.ClientXMPP):
    def __init__(self, jid, password, service, files):
        super().__init__(jid, password)
        self.service = service
        self.files = files
        self.result = None
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0128")
        self.register_plugin("xep_0363")
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("disconnected", self.on_disconnected)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.finished = self.loop.create_future()

    def finish(self, result):
        if not self.finished.done():
            self.finished.set_result(result)

    def on_failed_auth(self, _event):
        self.finish({"ok": False, "error": "authentication failed"})

    def on_connection_failed(self, event):
        self.finish({"ok": False, "error": "connection failed: %s" % (event,)})

    def on_disconnected(self, _event):
        self.finish({"ok": False, "error": "disconnected before the uploads finished"})

    async def on_session_start(self, _event):
        try:
            result = await self.run_uploads()
        except Exception as e:  # reported to the test as JSON
            result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        self.finish(result)

    async def discover(self):
        # disco#info of the domain and of each of its disco#items, as
        # XEP-0363 §2 describes. (slixmpp 1.8.3's get_info_from_domain, which
        # its own find_upload_service uses, passes coroutines to asyncio.wait
        # and fails on Python >= 3.11, so the walk is done here.)
        disco = self["xep_0030"]
        domain = self.boundjid.domain
        items = await disco.get_items(jid=domain, timeout=20)
        jids = [domain] + [item[0] for item in items["disco_items"]["items"]]
        infos = await asyncio.gather(*(disco.get_info(jid=j, timeout=20) for j in jids))
        seen = []
        for iq in infos:
            jid = str(iq["from"])
            info = iq["disco_info"]
            seen.append(jid)
            if jid != self.service:
                continue
            identities = [list(i[:2]) for i in info["identities"]]
            features = sorted(info["features"])
            if ["store", "file"] not in identities or UPLOAD_NS not in features:
                raise RuntimeError("%s is not an upload service: %r %r" % (jid, identities, features))
            max_size = None
            for form in info.iterables:
                values = form["values"]
                if values.get("FORM_TYPE") == [UPLOAD_NS]:
                    max_size = int(values["max-file-size"])
            return {"jid": jid, "identities": identities, "features": features,
                    "max_file_size": max_size}
        raise RuntimeError("upload service %s not found by disco; found %r" % (self.service, seen))

    async def run_uploads(self):
        service = await self.discover()
        plugin = self["xep_0363"]
        plugin.upload_service = slixmpp.JID(service["jid"])
        if service["max_file_size"] is not None:
            plugin.max_file_size = service["max_file_size"]

        # Keep the slot each upload_file call receives, to report the PUT URL.
        slots = []
        request_slot = plugin.request_slot

        def spy(*args, **kwargs):
            fut = request_slot(*args, **kwargs)
            slots.append(fut)
            return fut

        plugin.request_slot = spy

        uploads = []
        for f in self.files:
            path, ctype, via = f["path"], f.get("type"), f["via"]
            name = os.path.basename(path)
            size = os.path.getsize(path)
            up = {"name": name, "size": size, "type": ctype, "via": via}
            if via == "helper":
                before = len(slots)
                status = StatusLog()
                logging.getLogger("slixmpp.plugins.xep_0363.http_upload").addHandler(status)
                try:
                    with open(path, "rb") as fh:
                        up["get_url"] = await plugin.upload_file(
                            name, size=size, content_type=ctype, input_file=fh, timeout=60)
                    up["status"] = status.code
                except HTTPError as e:
                    up["status"], up["body"] = e.args[0], e.args[1]
                finally:
                    logging.getLogger("slixmpp.plugins.xep_0363.http_upload").removeHandler(status)
                if len(slots) != before + 1:
                    raise RuntimeError("upload_file requested no slot for %s" % name)
                slot = slots[-1].result()["http_upload_slot"]
                up["put_url"] = slot["put"]["url"]
                up["put_headers"] = {h["name"]: h["value"] for h in slot["put"]["headers"]}
                up["get_url"] = slot["get"]["url"]
            elif via in ("http", "slot"):
                iq = self.make_iq_get(ito=plugin.upload_service)
                req = iq["http_upload_request"]
                req["filename"] = name
                req["size"] = str(size)
                if ctype is not None:
                    req["content-type"] = ctype
                reply = await iq.send(timeout=20)
                slot = reply["http_upload_slot"]
                up["put_url"] = slot["put"]["url"]
                up["put_headers"] = {h["name"]: h["value"] for h in slot["put"]["headers"]}
                up["get_url"] = slot["get"]["url"]
                if via == "http":
                    up["status"], up["body"] = await asyncio.get_event_loop().run_in_executor(
                        None, http_put, up["put_url"], path, size, ctype, up["put_headers"])
                else:
                    up["status"], up["body"] = None, ""
            else:
                raise ValueError("unknown via %r" % via)
            uploads.append(up)
        return {"ok": True, "service": service, "uploads": uploads}


class StatusLog(logging.Handler):
    """Catches the status code that slixmpp's upload helper logs on success."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.code = None

    def emit(self, record):
        if record.msg.startswith("Response code:") and record.args:
            self.code = int(record.args[0])


def http_put(url, path, size, ctype, slot_headers):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise ValueError("PUT URL %s: only http is used in the tests" % url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    try:
        target = u.path + ("?" + u.query if u.query else "")
        conn.putrequest("PUT", target, skip_accept_encoding=True)
        conn.putheader("Content-Length", str(size))
        if ctype is not None:
            conn.putheader("Content-Type", ctype)
        for k, v in slot_headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(256 * 1024)
                if not chunk:
                    break
                conn.send(chunk)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


async def main_async(args, files):
    xmpp = Uploader(args.jid, args.password, args.service, files)
    xmpp["feature_mechanisms"].unencrypted_plain = True
    xmpp.connect(address=(args.host, args.port), force_starttls=False, disable_starttls=True)
    try:
        result = await asyncio.wait_for(xmpp.finished, args.timeout)
    except asyncio.TimeoutError:
        result = {"ok": False, "error": "timed out after %ss" % args.timeout}
    xmpp.del_event_handler("disconnected", xmpp.on_disconnected)
    xmpp.disconnect()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--service", required=True, help="JID of the upload component to use")
    p.add_argument("--files", required=True, help="JSON list of files to upload")
    p.add_argument("--timeout", type=float, default=90)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # The helper's status line is logged at INFO: let it through to StatusLog.
    logging.getLogger("slixmpp.plugins.xep_0363.http_upload").setLevel(logging.DEBUG)
    with open(args.files, encoding="utf-8") as fh:
        files = json.load(fh)
    try:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        result = loop.run_until_complete(main_async(args, files))
    except Exception as e:
        result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(result, ensure_ascii=False))
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
