#!/bin/sh
# local-redirect.sh: a local redirect (RFC 3875 6.2.2): only a Location that is a
# path, so the server answers with that resource instead of redirecting the client.
printf 'Location: /cgi-bin/hello.sh\r\n\r\n'
