<?php
// info.php: run by php-cgi (php-cgi sends its own header block). Prints which PHP
// server API runs it — "cgi-fcgi" under php-cgi — and the "name" GET parameter.
header('Content-Type: text/plain; charset=utf-8');
echo 'PHP_SAPI=', PHP_SAPI, "\n";
echo 'PHP_VERSION=', PHP_VERSION, "\n";
echo 'name=', $_GET['name'] ?? '', "\n";
