#!/usr/bin/env python3
# query.py: parses QUERY_STRING and an application/x-www-form-urlencoded POST body
# with urllib.parse (the cgi module is gone since Python 3.13) and prints both as JSON.
import json
import os
import sys
from urllib.parse import parse_qs

query = parse_qs(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)

form = {}
if os.environ.get("REQUEST_METHOD", "GET") == "POST":
    length = int(os.environ.get("CONTENT_LENGTH") or 0)
    body = sys.stdin.buffer.read(length).decode("utf-8", "replace")
    ctype = os.environ.get("CONTENT_TYPE", "").split(";")[0].strip()
    if ctype == "application/x-www-form-urlencoded":
        form = parse_qs(body, keep_blank_values=True)

sys.stdout.write("Content-Type: application/json\r\n\r\n")
json.dump({"method": os.environ.get("REQUEST_METHOD", ""), "query": query, "form": form},
          sys.stdout, sort_keys=True)
sys.stdout.write("\n")
