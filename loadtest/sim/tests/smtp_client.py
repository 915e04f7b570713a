#!/usr/bin/env python3
"""An SMTP client that is not ours: Python's smtplib, driven by a JSON script.

Reads a JSON list of steps on stdin, runs them in order and prints a JSON list
with one result per step on stdout. Every step may name a connection with
"conn" (default "main"), so several connections can be open at once.

Steps:
  {"op": "connect", "host": H, "port": P, "source": "127.0.0.N"}
  {"op": "ehlo"}                      -> code, message (the EHLO lines)
  {"op": "starttls"}                  -> code, message, tls_version
  {"op": "mail", "from": A}           -> code, message
  {"op": "rcpt", "to": A}             -> code, message
  {"op": "data", "message": TEXT}     -> code, message (354 failures too)
  {"op": "send_message", "from": A, "to": [..], "message": TEXT}
                                      -> one connection's MAIL/RCPT/DATA
  {"op": "raw", "text": T, "replies": N}
                                      -> codes/messages of N replies read
                                         after writing T in one send
  {"op": "quit"}
  {"op": "sleep", "secs": S}
A refused step gives {"code": C, "message": M}; a dropped connection gives
{"error": "..."}.
"""

import json
import smtplib
import ssl
import sys
import time


def text(resp):
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def result(code, resp):
    return {"code": code, "message": text(resp)}


def connect(step):
    client = smtplib.SMTP(timeout=10, source_address=(step["source"], 0))
    # SMTP(host, port) would hide the banner's code; connect() shows it but,
    # unlike the constructor, does not remember the host that starttls() needs.
    client._host = step["host"]
    code, resp = client.connect(step["host"], step["port"])
    return client, result(code, resp)


def starttls(client):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    code, resp = client.starttls(context=context)
    out = result(code, resp)
    out["tls_version"] = client.sock.version()
    return out


def raw(client, step):
    client.send(step["text"])
    replies = [client.getreply() for _ in range(step["replies"])]
    return {"replies": [result(code, resp) for code, resp in replies]}


def send_message(client, step):
    code, resp = client.mail(step["from"])
    if code != 250:
        return result(code, resp)
    for rcpt in step["to"]:
        code, resp = client.rcpt(rcpt)
        if code != 250:
            return result(code, resp)
    return data(client, step)


def data(client, step):
    code, resp = client.data(step["message"].encode("utf-8"))
    return result(code, resp)


def run(client, step):
    op = step["op"]
    if op == "ehlo":
        return result(*client.ehlo())
    if op == "starttls":
        return starttls(client)
    if op == "mail":
        return result(*client.mail(step["from"]))
    if op == "rcpt":
        return result(*client.rcpt(step["to"]))
    if op == "data":
        return data(client, step)
    if op == "send_message":
        return send_message(client, step)
    if op == "raw":
        return raw(client, step)
    if op == "quit":
        return result(*client.quit())
    raise ValueError("unknown op " + op)


def main():
    steps = json.load(sys.stdin)
    conns = {}
    results = []
    for step in steps:
        name = step.get("conn", "main")
        try:
            if step["op"] == "sleep":
                time.sleep(step["secs"])
                results.append({})
            elif step["op"] == "connect":
                conns[name], out = connect(step)
                results.append(out)
            else:
                results.append(run(conns[name], step))
        except smtplib.SMTPResponseException as err:
            results.append(result(err.smtp_code, err.smtp_error))
        except (smtplib.SMTPServerDisconnected, ConnectionError) as err:
            results.append({"error": "%s: %s" % (type(err).__name__, err)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
