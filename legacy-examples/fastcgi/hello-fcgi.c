/* hello-fcgi.c: a FastCGI program in C with libfcgi, as many legacy ones are
 * written. Served warm (cgibridge serve --fastcgi 'hello.fcgi') one process
 * answers request after request: the pid stays, the count goes up. Run with
 * no listening socket on fd 0, libfcgi serves one request as plain CGI.
 *
 *   gcc -O2 -o hello.fcgi hello-fcgi.c -lfcgi      (Debian: libfcgi-dev)
 */
#include <fcgi_stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
	long served = 0;
	while (FCGI_Accept() >= 0) {
		const char *q = getenv("QUERY_STRING");
		served++;
		printf("Content-Type: text/plain\r\n\r\n");
		printf("hello from pid %ld, request %ld, query %s\n", (long)getpid(), served, q ? q : "");
	}
	return 0;
}
