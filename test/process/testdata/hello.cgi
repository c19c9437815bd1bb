#!/bin/sh
# The smallest valid response.
echo "Content-Type: text/plain"
echo
echo "hello"
