#!/bin/sh
# lf.sh: a header block with bare LF line ends, which CGI servers accept.
printf 'Content-Type: text/plain\nX-Line-Ends: lf\n\n'
echo 'lf body'
