#!/bin/sh
# redirect.sh: a client redirect (RFC 3875 6.2.4): an absolute Location with its own
# Status, so the web server sends a 302 to the browser.
printf 'Status: 302 Found\r\n'
printf 'Location: https://example.org/\r\n\r\n'
