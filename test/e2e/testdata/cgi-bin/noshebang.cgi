echo "noshebang.cgi: executable, but no #! line and no interpreter for .cgi"
