#!/bin/sh
# writefirst.sh: writes 1 MiB before reading its request body (as git-http-backend
# does on push), then prints the body's sha256 on the last line. A server that
# writes the whole body before reading output deadlocks here.
printf 'Content-Type: text/plain\r\n\r\n'
head -c 1048576 /dev/zero | tr '\0' 'a'
echo
sha256sum | cut -d' ' -f1
