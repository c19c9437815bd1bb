<?php
// counter.php: a PHP page meant to be served warm by a pool of php-cgi:
//
//   cgibridge serve --root DIR --fastcgi '*.php'
//
// One php-cgi process (PHP_SAPI "cgi-fcgi") serves every PHP script under
// the root, so the pid stays across requests. PHP itself starts each
// request afresh — a static is back to 0 every time — which is why PHP
// pages need no change to be served warm. php-cgi ends itself after
// PHP_FCGI_MAX_REQUESTS requests (default 500); the pool replaces it
// without a failed request.
header('Content-Type: text/plain; charset=utf-8');
function calls() { static $n = 0; return ++$n; }
printf("sapi=%s pid=%d calls=%d script=%s\n", PHP_SAPI, getmypid(), calls(), basename($_SERVER['SCRIPT_FILENAME']));
