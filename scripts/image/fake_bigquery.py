#!/usr/bin/env python3
"""A BigQuery jobs.query stand-in over HTTPS on 127.0.0.1, for the image's TLS test.

  fake_bigquery.py --cert SERVER.pem --key SERVER.key --project P --port-file F --log F

Answers POST /bigquery/v2/projects/P/queries (and GET .../queries/<job>,
in case a client pages) with one row, hamlet = 42. Every request and every
failed TLS handshake is appended to --log as a JSON line, so the test can
tell "the client refused our certificate" from "the client never came".
Listens until killed; the port it got is written to --port-file.
"""

import argparse
import http.server
import json
import ssl
import sys
import threading

RESPONSE = {
    "kind": "bigquery#queryResponse",
    "jobComplete": True,
    "schema": {"fields": [
        {"name": "corpus", "type": "STRING"},
        {"name": "total_words", "type": "INTEGER"},
    ]},
    "rows": [{"f": [{"v": "hamlet"}, {"v": "42"}]}],
    "totalRows": "1",
    "jobReference": {"projectId": "PROJECT", "jobId": "j1"},
}
QUERY_PATH = "/bigquery/v2/projects/PROJECT/queries"  # set from --project

LOCK = threading.Lock()
LOG = None


def log(event, **fields):
    with LOCK:
        LOG.write(json.dumps({"event": event, **fields}) + "\n")
        LOG.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        log("request", method="POST", path=self.path, body=body[:2000])
        if self.path.split("?")[0] == QUERY_PATH:
            self._answer(200, RESPONSE)
        else:
            self._answer(404, {"error": {"code": 404, "message": f"fake: no route {self.path}"}})

    def do_GET(self):  # noqa: N802
        log("request", method="GET", path=self.path)
        if self.path.split("?")[0].startswith(QUERY_PATH + "/"):
            self._answer(200, RESPONSE)
        else:
            self._answer(404, {"error": {"code": 404, "message": f"fake: no route {self.path}"}})

    def log_message(self, fmt, *args):  # requests are logged as JSON above
        pass


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, ctx):
        super().__init__(addr, Handler)
        self.ctx = ctx

    def finish_request(self, request, client_address):
        # Handshake in the connection's thread, so a refused certificate is
        # logged (the client's alert says why) instead of vanishing in accept().
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            log("tls_error", reason=str(err))
            return
        log("tls_ok", version=tls.version())
        super().finish_request(tls, client_address)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()

    global LOG, QUERY_PATH
    QUERY_PATH = f"/bigquery/v2/projects/{args.project}/queries"
    RESPONSE["jobReference"]["projectId"] = args.project
    LOG = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as the server)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    server = TLSServer(("127.0.0.1", 0), ctx)
    with open(args.port_file, "w", encoding="ascii") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
