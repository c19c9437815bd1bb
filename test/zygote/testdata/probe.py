#!/usr/bin/python3
"""Prints what a CGI script can observe of its process, as JSON, so that
exec mode and warm mode can be compared field by field."""
import atexit, hashlib, json, locale, os, random, subprocess, sys, time
import probe_mod

counter = 0
counter += 1
probe_mod.hits.append(1)
q = dict(kv.split("=", 1) for kv in os.environ.get("QUERY_STRING", "").split("&") if "=" in kv)
if q.get("leave"):
    os.environ["LEFT_BY_EARLIER_REQUEST"] = "1"
    probe_mod.hits.extend([1, 1])
body = sys.stdin.buffer.read()
if q.get("unclosed"):
    f = open(q["unclosed"], "w")
    f.write("flushed at exit\n")  # never closed: must be flushed at exit
if q.get("atexit"):
    atexit.register(lambda: print("atexit ran", flush=True))
out = {
    "name": __name__,
    "doc": __doc__.split("\n")[0],
    "file": __file__,
    "argv": sys.argv,
    "path0": sys.path[0],
    "cwd": os.getcwd(),
    "counter": counter,
    "module_hits": len(probe_mod.hits),
    "env": dict(os.environ),
    "subprocess_env": sorted(subprocess.run(["env"], capture_output=True, text=True).stdout.splitlines()),
    "body_sha": hashlib.sha256(body).hexdigest(),
    "body_len": len(body),
    "tz": time.strftime("%Z", time.localtime(0)),
    "locale": locale.setlocale(locale.LC_CTYPE),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "stdin": [sys.stdin.encoding, sys.stdin.errors],
    "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering, sys.stdout.write_through],
    "stderr": [sys.stderr.encoding, sys.stderr.errors, sys.stderr.line_buffering],
    "main_is_module": sys.modules["__main__"].__dict__ is globals(),
    "globals": sorted(k for k in globals() if k.startswith("__")),
    "flags": [sys.flags.optimize, sys.flags.dont_write_bytecode],
    "pgrp_is_pid": os.getpgrp() == os.getpid(),
    "random": random.random(),
}
print("Content-Type: application/json")
print()
print(json.dumps(out, sort_keys=True), flush=True)
how = q.get("exit")
if how == "sys":
    sys.exit(int(q.get("code", "0")))
if how == "raise":
    raise ValueError("uncaught on purpose")
if how == "os":
    sys.stdout.flush()
    os._exit(int(q.get("code", "0")))
if how == "msg":
    sys.exit("a message to stderr")
