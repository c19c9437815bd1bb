/* hello.c: a compiled CGI program, the fastest kind to exec. Build it with
 *     cc -O2 -o hello.cgi hello.c
 * (the tests do; binaries are not committed). Prints a header and a few variables. */
#include <stdio.h>
#include <stdlib.h>

static const char *getenv_or_empty(const char *name)
{
	const char *v = getenv(name);
	return v ? v : "";
}

int main(void)
{
	static const char *names[] = {
		"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR",
	};
	size_t i;

	fputs("Content-Type: text/plain\r\n\r\n", stdout);
	puts("Hello from C");
	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		printf("%s=%s\n", names[i], getenv_or_empty(names[i]));
	return 0;
}
