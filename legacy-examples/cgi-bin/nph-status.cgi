#!/bin/sh
# nph-status.cgi: a non-parsed-header script (the nph- prefix): it writes the HTTP
# status line itself. nginx would turn it into a 200; the bridge should send 201.
printf 'HTTP/1.1 201 Created\r\n'
printf 'Content-Type: text/plain\r\n'
printf 'Location: /created/1\r\n\r\n'
echo created
