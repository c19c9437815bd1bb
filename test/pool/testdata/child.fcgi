#!/usr/bin/python3
# A FastCGI program for the pool tests: it takes its listening socket on
# fd 0, as spawn-fcgi, mod_fcgid and cgibridge's pools give it, and answers
# one request per connection. The request's QUERY_STRING picks a behaviour,
# good or bad, so the tests can make a child crash, hang, exit or break the
# protocol on demand. VERSION is rewritten by the reload tests.
import os, socket, struct, sys, time

VERSION = "v1"
START_ENV = dict(os.environ)
served = 0

def records(conn):
    buf = b""
    while True:
        while len(buf) < 8:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        ver, typ, rid, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
        while len(buf) < 8 + clen + plen:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        yield typ, rid, buf[8:8 + clen]
        buf = buf[8 + clen + plen:]

def record(typ, rid, content):
    return struct.pack(">BBHHBB", 1, typ, rid, len(content), 0, 0) + content

def params(data):
    out, i = {}, 0
    while i < len(data):
        lens = []
        for _ in range(2):
            n = data[i]
            if n >> 7:
                n = struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF
                i += 4
            else:
                i += 1
            lens.append(n)
        name = data[i:i + lens[0]].decode()
        i += lens[0]
        out[name] = data[i:i + lens[1]].decode()
        i += lens[1]
    return out

def answer(conn, rid, body, status=0, stderr=b""):
    out = record(6, rid, b"Content-Type: text/plain\r\n\r\n" + body) + record(6, rid, b"")
    if stderr:
        out += record(7, rid, stderr) + record(7, rid, b"")
    conn.sendall(out + record(3, rid, struct.pack(">IB3x", status, 0)))

lsock = socket.socket(fileno=0)
while True:
    conn, _ = lsock.accept()
    p, body, rid = b"", b"", 1
    for typ, rid, content in records(conn):
        if typ == 4:
            p += content
        elif typ == 5:
            if not content:
                break
            body += content
    env = params(p)
    mode = env.get("QUERY_STRING", "")
    served += 1
    me = "pid=%d n=%d version=%s" % (os.getpid(), served, VERSION)
    if mode == "crash-before":
        os._exit(3)
    elif mode == "crash-after":
        conn.sendall(record(6, rid, b"Content-Type: text/plain\r\n\r\npartial"))
        os._exit(3)
    elif mode == "exit-after":
        answer(conn, rid, me.encode())
        conn.close()
        sys.exit(0)
    elif mode == "sleep":
        time.sleep(3600)
    elif mode == "garbage":
        conn.sendall(b"this is not FastCGI at all\r\n\r\n")
    elif mode == "otherid":
        conn.sendall(record(3, rid + 1, struct.pack(">IB3x", 0, 0)))
    elif mode == "oversize":
        conn.sendall(struct.pack(">BBHHBB", 1, 6, rid, 10, 0, 0) + b"Content-Type: text/plain\r\n\r\nmore than ten")
    elif mode == "close":
        pass
    elif mode == "startenv":
        answer(conn, rid, "".join("%s=%s\n" % kv for kv in sorted(START_ENV.items())).encode())
    elif mode == "reqenv":
        answer(conn, rid, "".join("%s=%s\n" % kv for kv in sorted(env.items())).encode())
    elif mode == "body":
        answer(conn, rid, ("len=%d " % len(body)).encode() + body[:64])
    elif mode == "stderr":
        answer(conn, rid, me.encode(), stderr=b"a warning from the child\n")
    elif mode == "status7":
        answer(conn, rid, me.encode(), status=7)
    else:
        answer(conn, rid, me.encode())
    conn.close()
