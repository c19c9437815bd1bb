#!/bin/sh
# Like git-http-backend on push: 1 MiB of output before reading the body.
echo "Content-Type: application/octet-stream"
echo
head -c 1048576 /dev/zero
n=$(wc -c)
echo
echo "body=$n"
