"""Drives peerlet's web page in headless Chromium over the DevTools protocol
(CDP), with the Python standard library only (a minimal WebSocket client).
Run by tests/web.rs; arguments come as one JSON object on the command line:

  {"devtools_port", "url", "magnet", "hash", "upload", "upload_name",
   "search", "search_name", "out_dir"}

It adds `magnet` by typing it into the page and clicking "Add", waits until
the page shows 100% for `hash`, uploads the .torrent file `upload` through
the file input, pauses it, checks a bad link gives an error on the page,
searches, takes screenshots (390 px and 1280 px wide) into `out_dir`, and
removes the uploaded torrent through the confirmation. Every wait is bounded.
Prints one line per step; exits 1 with the reason on failure.
"""
import base64, json, os, socket, struct, sys, time, urllib.request

ARGS = json.loads(sys.argv[1])
T0 = time.time()


def log(msg):
    print("[%5.1fs] %s" % (time.time() - T0, msg), flush=True)


def fail(msg):
    log("FAIL: " + msg)
    sys.exit(1)


class WebSocket:
    """Just enough of RFC 6455 for CDP: text frames, client masking, fragments, ping."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("websocket handshake: connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise IOError("websocket handshake refused: %r" % head[:200])

    def _read(self, n):
        parts, have = [self.buf], len(self.buf)
        while have < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("websocket closed")
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buf = data[n:]
        return data[:n]

    def _frame(self, opcode, data):
        hdr = bytearray([0x80 | opcode])
        n = len(data)
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack(">H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack(">Q", n)
        mask = os.urandom(4)
        hdr += mask
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(bytes(hdr) + masked)

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self):
        message = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            if opcode == 0x9:
                self._frame(0xA, data)
                continue
            if opcode == 0x8:
                raise EOFError("websocket closed by Chromium")
            if opcode == 0xA:
                continue
            message.append(data)
            if b0 & 0x80:
                return b"".join(message).decode()


class Page:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.problems = []  # console errors, exceptions, CSP violations

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.problems.append("exception: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            # Failed loads (the refused link's 400, a favicon's 404) are expected.
            if e.get("level") == "error" and e.get("source") != "network":
                self.problems.append("log: %s %s" % (e.get("text"), e.get("url", "")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append("console.error: %s" % [a.get("value") for a in params.get("args", [])])

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    fail("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self._event(msg)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            fail("evaluating %s: %s" % (expr[:80], r["exceptionDetails"]))
        return r["result"].get("value")

    def wait(self, what, expr, secs=60):
        deadline = time.time() + secs
        while time.time() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.25)
        fail("timed out after %ds waiting for %s; page says: %s" % (secs, what, self.js("document.body.innerText")[:2000]))

    def click(self, selector):
        """A real mouse click at the centre of the element."""
        box = self.js("(() => { const e = document.querySelector(%s); if (!e) return null;"
                      " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(selector))
        if not box:
            fail("no element " + selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector, text):
        self.js("(() => { const e = document.querySelector(%s); e.focus(); e.value = ''; })()" % json.dumps(selector))
        self.call("Input.insertText", text=text)

    def screenshot(self, width, height, mobile, path):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
        time.sleep(0.3)
        full = self.js("Math.ceil(document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=max(height, full),
                  deviceScaleFactor=1, mobile=mobile)
        time.sleep(0.3)
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with open(path, "wb") as f:
            f.write(png)
        log("screenshot %dx%d: %s (%d bytes)" % (width, max(height, full), path, len(png)))
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)


def card(hash_, sel):
    return "document.querySelector('li[data-hash=\"%s\"] %s')" % (hash_, sel)


def main():
    port = ARGS["devtools_port"]
    targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10))
    pages = [t for t in targets if t.get("type") == "page"]
    if not pages:
        req = urllib.request.Request("http://127.0.0.1:%d/json/new?about:blank" % port, method="PUT")
        pages = [json.load(urllib.request.urlopen(req, timeout=10))]
    page = Page(pages[0]["webSocketDebuggerUrl"])
    for domain in ("Runtime", "Log", "Page"):
        page.call(domain + ".enable")
    page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)

    page.call("Page.navigate", url=ARGS["url"])
    page.wait("the page to load", "document.readyState === 'complete' && !!document.getElementById('add-link')", 30)
    if page.js("document.title") != "peerlet":
        fail("title is %r" % page.js("document.title"))
    page.wait("the node summary", "document.getElementById('summary').textContent.includes('torrent')", 15)
    log("page loaded: %s" % ARGS["url"])

    # A bad link: the API's error shows on the page.
    page.type_into("#add-link", "magnet:?xt=urn:btih:nothex")
    page.click("#add-btn")
    err = page.wait("an error message", "(() => { const e = document.getElementById('error');"
                    " return !e.hidden && e.textContent; })()", 15)
    log("bad link refused on the page: %r" % err)

    # The magnet link (with x.pe = the seeder) typed in and added.
    page.type_into("#add-link", ARGS["magnet"])
    page.click("#add-btn")
    page.wait("the torrent's card", card(ARGS["hash"], ".pct") + " !== null", 15)
    log("torrent card shown")
    if not page.js("document.getElementById('error').hidden"):
        fail("error shown after adding: " + page.js("document.getElementById('error').textContent"))
    seen = []
    deadline = time.time() + 60
    while True:
        pct = page.js(card(ARGS["hash"], ".pct") + ".textContent")
        state = page.js(card(ARGS["hash"], ".state") + ".textContent")
        if (pct, state) not in seen:
            seen.append((pct, state))
            log("page shows %s %s" % (pct, state))
        if pct == "100%" and state == "seeding":
            break
        if time.time() > deadline:
            fail("not 100%% within 60 s: %s" % page.js("document.body.innerText")[:2000])
        time.sleep(0.25)

    # A .torrent file through the file input (nobody has its data).
    doc = page.call("DOM.getDocument")
    node = page.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#add-file")
    page.call("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[ARGS["upload"]])
    page.click("#upload-btn")
    up_hash = page.wait("the uploaded torrent's card",
                        "(() => { for (const li of document.querySelectorAll('#torrents > li'))"
                        " if (li.querySelector('.name').textContent === %s) return li.dataset.hash;"
                        " return null; })()" % json.dumps(ARGS["upload_name"]), 15)
    log("uploaded .torrent shown as %s" % up_hash)
    page.click("li[data-hash=\"%s\"] .actions button.secondary" % up_hash)
    page.wait("the paused state", card(up_hash, ".state") + ".textContent === 'paused'", 15)
    page.wait("the resume button", card(up_hash, ".actions button.secondary") + ".textContent === 'Resume'", 5)
    log("paused through the page")

    # A search over the overlay: live status, then the seeder's torrent as a
    # result with an "Add" button. The first search may come before the
    # leecher has a neighbour, so up to three tries.
    page.wait("a neighbour in the Node section", "!!document.querySelector('#nodes .nb')", 20)
    # A search is answered once the neighbour has shared its content table.
    page.wait("content entries in the Node section",
              "/content [1-9]/.test(document.getElementById('nodes-summary').textContent)", 20)
    found = False
    for attempt in range(3):
        page.type_into("#search-q", ARGS["search"])
        page.click("#search-btn")
        page.wait("the search to start", "document.getElementById('search-status').textContent.startsWith('searching')", 10)
        found = page.wait("search results or the end of the search",
                          "document.querySelectorAll('#results > li').length > 0 || "
                          "!document.getElementById('search-status').textContent.startsWith('searching')", 15)
        found = page.js("document.querySelectorAll('#results > li').length > 0")
        log("search %d: %s" % (attempt + 1, page.js("document.getElementById('search-status').textContent")))
        if found:
            break
    if not found:
        fail("the search found nothing in three tries")
    page.wait("the result's name", "document.querySelector('#results > li .name').textContent === %s" % json.dumps(ARGS["search_name"]), 5)
    page.click("#results > li button")
    page.wait("the result added", "/^(Added|Already here)$/.test(document.querySelector('#results > li button').textContent)", 10)
    log("search result added through its button (already present)")
    page.wait("the node section", "document.querySelectorAll('#node dt').length > 0", 10)

    # Layout at 390 px: nothing wider than the screen.
    overflow = page.js("(() => { const w = document.documentElement.clientWidth; const bad = [];"
                       " for (const e of document.querySelectorAll('body *')) { const r = e.getBoundingClientRect();"
                       " if (r.width && r.right > w + 1) bad.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right)); }"
                       " return [document.documentElement.scrollWidth, w, bad.slice(0, 10)]; })()")
    log("390 px layout: scrollWidth %s, clientWidth %s" % (overflow[0], overflow[1]))
    if overflow[0] > overflow[1] or overflow[2]:
        fail("the page is wider than 390 px: %s" % overflow)

    os.makedirs(ARGS["out_dir"], exist_ok=True)
    page.screenshot(390, 844, True, os.path.join(ARGS["out_dir"], "web-390.png"))
    page.screenshot(1280, 800, False, os.path.join(ARGS["out_dir"], "web-1280.png"))
    page.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
    page.screenshot(390, 844, True, os.path.join(ARGS["out_dir"], "web-390-dark.png"))
    page.call("Emulation.setEmulatedMedia", features=[])
    page.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)

    # Remove the uploaded torrent: confirmation, delete data, gone.
    if page.js(card(up_hash, "input[type=checkbox]") + ".offsetParent !== null"):
        fail("the remove confirmation shows before Remove is clicked")
    page.click("li[data-hash=\"%s\"] .actions button.danger" % up_hash)
    page.wait("the confirmation", card(up_hash, "input[type=checkbox]") + ".offsetParent !== null", 5)
    if page.js(card(up_hash, ".actions button.danger") + ".offsetParent !== null"):
        fail("the Remove button is still shown next to its confirmation")
    page.click("li[data-hash=\"%s\"] input[type=checkbox]" % up_hash)
    page.click("li[data-hash=\"%s\"] button.danger.solid" % up_hash)
    page.wait("the card to go", card(up_hash, ".pct") + " === null", 15)
    log("removed through the page")

    page.js("1")  # drain pending events
    if page.problems:
        fail("the page reported problems: %s" % page.problems)
    log("ok")


main()
