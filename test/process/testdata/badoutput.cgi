#!/bin/sh
# Output that is not a CGI response: a header line without a colon.
echo "this is not a header"
echo
