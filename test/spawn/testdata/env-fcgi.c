/* env-fcgi.c: a libfcgi program that reports how it was started — its
 * user, working directory, arguments and the start-up environment a spawn
 * supervisor gave it (read before the accept loop: fcgi_stdio replaces the
 * environment with each request's params). A request with the query
 * sleep_ms=N takes N milliseconds, for tests that need a child busy.
 *
 * libfcgi 2.4.2 (Debian 12) catches SIGTERM itself and finishes the request
 * in hand before it exits. With DIE_ON_SIGTERM set this program dies on
 * SIGTERM at once instead, mid-request or not, as many FastCGI programs do
 * (libfcgi leaves a handler that is already there alone). With
 * HOLD_SOCKET set it keeps a socket of its own open, as a program that
 * logs to syslog or keeps a database connection does. VERSION, set with
 * -DVERSION='"2"', tells builds apart.
 */
#include <fcgi_stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "1"
#endif

static const char *names[] = {
	"PHP_FCGI_CHILDREN", "SPAWN_TEST_VAR", "LISTEN_PID", "LISTEN_FDS",
	"LISTEN_FDNAMES", "NOTIFY_SOCKET", "FCGI_WEB_SERVER_ADDRS",
	"_CGIBRIDGE_SPAWN_READY_FD", NULL,
};

static void die(int sig)
{
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(int argc, char **argv)
{
	const char *vals[16];
	char cwd[4096];
	int i;

	for (i = 0; names[i]; i++) {
		const char *v = getenv(names[i]);
		vals[i] = v ? strdup(v) : "<unset>";
	}
	if (getenv("DIE_ON_SIGTERM"))
		signal(SIGTERM, die);
	if (getenv("HOLD_SOCKET") && socket(AF_UNIX, SOCK_DGRAM, 0) < 0)
		return 1;
	if (!getcwd(cwd, sizeof cwd))
		strcpy(cwd, "?");
	while (FCGI_Accept() >= 0) {
		const char *q = getenv("QUERY_STRING");
		if (q && strncmp(q, "sleep_ms=", 9) == 0)
			usleep(atoi(q + 9) * 1000);
		printf("Content-Type: text/plain\r\n\r\n");
		printf("version=%s\n", VERSION);
		printf("pid=%ld\nuid=%ld\ngid=%ld\ncwd=%s\n", (long)getpid(), (long)getuid(), (long)getgid(), cwd);
		for (i = 1; i < argc; i++)
			printf("arg%d=%s\n", i, argv[i]);
		for (i = 0; names[i]; i++)
			printf("env %s=%s\n", names[i], vals[i]);
	}
	return 0;
}
