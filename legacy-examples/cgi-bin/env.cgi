#!/bin/sh
# env.cgi: dumps the whole CGI environment, one NAME=value a line, sorted by name,
# so tests can assert exactly what a script receives (and what it must not).
printf 'Content-Type: text/plain\r\n\r\n'
env | LC_ALL=C sort
