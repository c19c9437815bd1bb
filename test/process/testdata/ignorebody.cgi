#!/bin/sh
# Answers without ever reading its standard input.
echo "Content-Type: text/plain"
echo
echo "ignored"
