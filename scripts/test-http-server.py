#!/usr/bin/env python3
"""A small HTTP server for vmctl's fetch tests: serves DIR on 127.0.0.1 (never elsewhere),
honours `Range: bytes=N-` (206 Partial Content), logs each request's path and Range header to
LOG, and with --cut-after BYTES sends only that many bytes of the first full GET of any file
larger than that, then drops the connection (an interrupted download).

Usage: test-http-server.py DIR LOG [--cut-after BYTES]; prints the chosen port on stdout.
"""
import http.server, os, signal, sys, threading

# The test stops this server with SIGTERM: a parent that ignores or blocks it (vmctl turns
# SIGTERM into cancellation) hands that on through exec, so both are undone here.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

root, log = sys.argv[1], sys.argv[2]
cut = int(sys.argv[sys.argv.index("--cut-after") + 1]) if "--cut-after" in sys.argv else None
cut_done = set()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = os.path.join(root, os.path.basename(self.path))
        rng = self.headers.get("Range")
        with lock, open(log, "a") as f:
            f.write(f"GET {os.path.basename(self.path)} range={rng}\n")
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start = 0
        if rng and rng.startswith("bytes=") and rng[6:].endswith("-"):
            start = int(rng[6:-1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        limit = size - start
        with lock:
            if cut is not None and start == 0 and size > cut and path not in cut_done:
                cut_done.add(path)
                limit = cut
        with open(path, "rb") as f:
            f.seek(start)
            while limit > 0:
                chunk = f.read(min(65536, limit))
                if not chunk:
                    break
                self.wfile.write(chunk)
                limit -= len(chunk)
        self.wfile.flush()
        self.close_connection = True


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
