# cgibridge's zygote helper for Python CGI scripts (see protocol.go).
#
# Started as INTERPRETER [FLAGS] -c <this source> SCRIPT, it preloads the
# script's top-level imports (evicting any module that reads the request's
# environment while it is imported), compiles the script, and keeps spare
# forked children. A spare takes one request: its stdin, stdout and stderr,
# its cwd, argv and environment; then it runs the script as a fresh
# `python3 SCRIPT` would, and exits. The parent only forks spares and waits
# for children (no signal handlers: they cost lost requests and deadlocks in
# the prototypes), reporting each request child's exit on the control pipe.
import ast
import atexit
import builtins
import ctypes
import gc
import importlib.machinery
import io
import locale
import os
import select
import socket
import struct
import sys
import time
import traceback
import types

SCRIPT = sys.argv[1]
BRIDGE_UID = int(os.environ.pop("CGIBRIDGE_ZYGOTE_UID"))
SPARES = max(1, int(os.environ.pop("CGIBRIDGE_ZYGOTE_SPARES", "2")))
START_ENV = dict(os.environ)
# The control pipe comes on fd 1; it moves out of the way, and fd 1 becomes
# the helper's log, so a module that prints while imported cannot garble it.
CONTROL = os.dup(1)
os.dup2(2, 1)
PARENT = os.getpid()
LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG, SIGKILL = 1, 9
# The interpreter's own flags (before -c): -u makes stdio unbuffered.
FLAGS = sys.orig_argv[1:sys.orig_argv.index("-c")] if "-c" in sys.orig_argv else []
UNBUFFERED = any(f.startswith("-") and not f.startswith("--") and "u" in f[1:] for f in FLAGS)
REQUEST_VARS = ("HTTP_", "REQUEST_", "QUERY_STRING", "CONTENT_", "SCRIPT_", "PATH_INFO",
                "PATH_TRANSLATED", "REMOTE_", "SERVER_", "GATEWAY_INTERFACE", "DOCUMENT_",
                "REDIRECT_", "HTTPS", "AUTH_TYPE")


def control(letter, text):
    line = ("%s %s\n" % (letter, text.replace("\n", " "))).encode("utf-8", "backslashreplace")
    os.write(CONTROL, line[:4000])


def signature(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def compile_script():
    sig = signature(SCRIPT)
    with open(SCRIPT, "rb") as f:
        src = f.read()
    return sig, src, compile(src, SCRIPT, "exec", dont_inherit=True)


def top_level_imports(src):
    """The modules the script imports at its top level (and in top-level
    try blocks), absolute imports only."""
    names = []
    body = list(ast.parse(src).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Try):
            body[0:0] = node.body
    return names


class TracedEnviron(os._Environ):
    """os.environ during preloading: remembers the names read that the
    helper's environment does not have, which must come from a request."""
    missing = []

    def __getitem__(self, key):
        if key not in START_ENV or key.startswith(REQUEST_VARS):
            TracedEnviron.missing.append(key)
        return super().__getitem__(key)


def preload(src):
    """Imports the script's modules; returns the files they came from."""
    files = []
    for name in top_level_imports(src):
        if name in sys.modules:
            continue
        before = set(sys.modules)
        TracedEnviron.missing = []
        os.environ.__class__ = TracedEnviron
        try:
            __import__(name)
        except BaseException as e:  # the script meets the same error itself
            control("W", "not preloaded: import %s failed: %s" % (name, e))
        finally:
            os.environ.__class__ = os._Environ
        added = set(sys.modules) - before
        if TracedEnviron.missing:
            # It read the request's environment at import: it must be
            # imported by each request's child, with that request's.
            for m in added:
                del sys.modules[m]
            control("W", "not preloaded: module %s reads %s at import" % (name, TracedEnviron.missing[0]))
            continue
        for m in added:
            f = getattr(sys.modules.get(m), "__file__", None)
            if f:
                files.append(os.path.realpath(f))
    return files


def check_clean():
    """Threads or open files left by preloading would be shared by every
    child: refuse."""
    tasks = os.listdir("/proc/self/task")
    if len(tasks) > 1:
        return "preloading started %d threads" % (len(tasks) - 1)
    fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    extra = [fd for fd in fds if fd > 2 and fd != CONTROL and os.path.exists("/proc/self/fd/%d" % fd)]
    if extra:
        return "preloading left %d files open" % len(extra)
    return None


# --- preload ---------------------------------------------------------------

try:
    SIG, SRC, CODE = compile_script()
except SyntaxError as e:
    control("C", "SyntaxError: %s" % e)
    sys.exit(0)
except OSError as e:
    control("C", "cannot read the script: %s" % e)
    sys.exit(0)
FILES = preload(SRC)
why = check_clean()
if why:
    control("C", why)
    sys.exit(0)
for f in [os.path.realpath(SCRIPT)] + FILES:
    control("F", f)
LSOCK = socket.socket(fileno=0)
gc.collect()
gc.freeze()  # keep the collector from touching (and copying) inherited pages
control("R", str(len(FILES)))


# --- a request, in a spare child --------------------------------------------

def recv_request(conn):
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        if len(fds) != 3:
            raise ValueError("want 3 descriptors, got %d" % len(fds))
        while len(data) < 8:
            more = conn.recv(65536)
            if not more:
                raise ValueError("short payload")
            data += more
        if data[:4] != b"CGB1":
            raise ValueError("bad protocol version")
        (n,) = struct.unpack(">I", data[4:8])
        if n > 1 << 20:
            raise ValueError("payload too large")
        while len(data) < 8 + n:
            more = conn.recv(65536)
            if not more:
                raise ValueError("short payload")
            data += more
        fields = data[8:8 + n].split(b"\0")
        if fields and fields[-1] == b"":
            fields.pop()
        script, cwd, argc = fields[0], fields[1], int(fields[2])
        argv = fields[3:3 + argc]
        env = fields[3 + argc:]
        return fds, os.fsdecode(script), os.fsdecode(cwd), [os.fsdecode(a) for a in argv], env
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def coerce_locale(env):
    """PEP 538, as a fresh interpreter started with this environment does:
    a C or POSIX LC_CTYPE becomes C.UTF-8, in the environment too."""
    if env.get("LC_ALL") or env.get("PYTHONCOERCECLOCALE") == "0":
        return
    try:
        if locale.setlocale(locale.LC_CTYPE, "") not in ("C", "POSIX"):
            return
    except locale.Error:
        return
    for name in ("C.UTF-8", "C.utf8", "UTF-8"):
        try:
            locale.setlocale(locale.LC_CTYPE, name)
        except locale.Error:
            continue
        os.environ["LC_CTYPE"] = env["LC_CTYPE"] = name
        return


def stdio(env):
    """Make sys.std* as a fresh interpreter with this environment would."""
    enc, errs = None, None
    pie = env.get("PYTHONIOENCODING")
    if pie:
        enc, _, errs = pie.partition(":")
        enc, errs = enc or None, errs or None
    try:
        locale.setlocale(locale.LC_CTYPE, "")
    except locale.Error:
        pass
    ctype = locale.setlocale(locale.LC_CTYPE)
    c_like = ctype in ("C", "POSIX") or ctype.startswith("C.")
    if enc is None:
        enc = "utf-8" if sys.flags.utf8_mode or c_like else locale.getpreferredencoding(False)
    if errs is None:
        errs = "surrogateescape" if sys.flags.utf8_mode or c_like else "strict"
    unbuffered = UNBUFFERED or bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding=enc, errors=errs)
    if unbuffered:
        out = io.TextIOWrapper(io.open(1, "wb", buffering=0, closefd=False), encoding=enc, errors=errs, write_through=True)
        err = io.TextIOWrapper(io.open(2, "wb", buffering=0, closefd=False), encoding=enc, errors="backslashreplace", write_through=True)
    else:
        out = io.TextIOWrapper(io.open(1, "wb", closefd=False), encoding=enc, errors=errs)
        err = io.TextIOWrapper(io.open(2, "wb", closefd=False), encoding=enc, errors="backslashreplace", line_buffering=True)
    sys.stdout = sys.__stdout__ = out
    sys.stderr = sys.__stderr__ = err


def exit_status(e):
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def run(script, cwd, argv, envlist, edited):
    global SIG
    os.chdir(cwd)
    env = {}
    for kv in envlist:
        k, _, v = kv.partition(b"=")
        env[os.fsdecode(k)] = os.fsdecode(v)
    # In place: modules hold the object, and putenv reaches subprocesses.
    os.environ.clear()
    os.environ.update(env)
    coerce_locale(env)
    time.tzset()
    stdio(env)
    sys.argv = argv
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    atexit._clear()
    status = 0
    code = CODE
    try:
        if edited:
            SIG, _, code = compile_script()
    except SyntaxError as e:
        # As CPython reports a script that does not compile: no traceback.
        traceback.print_exception(type(e), e, None)
        code, status = None, 1
    except OSError as e:
        print("%s: can't open file %r: %s" % (sys.executable, script, e), file=sys.stderr)
        code, status = None, 2
    if code is not None:
        main = types.ModuleType("__main__")
        main.__file__ = script
        main.__builtins__ = builtins
        main.__cached__ = None
        main.__annotations__ = {}
        try:
            # Imported at the helper's start: imported here, in every
            # child, it cost ~1.3 ms and ~400 page faults per request.
            main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
        except Exception:
            main.__loader__ = None
        sys.modules["__main__"] = main
        try:
            exec(code, main.__dict__)
        except SystemExit as e:
            status = exit_status(e)
        except BaseException:
            # The traceback starts at the script, as in a fresh interpreter:
            # the frame of this function, which exec'd it, is left out.
            etype, value, tb = sys.exc_info()
            tb = tb.tb_next if tb else None
            value.__traceback__ = tb  # what the hook prints from
            sys.excepthook(etype, value, tb)
            status = 1
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    # Objects of the script's go now, as at the end of a real interpreter:
    # files it left open are flushed and closed.
    try:
        sys.modules["__main__"].__dict__.clear()
        gc.collect()
    except BaseException:
        pass
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            if f is sys.stdout:
                status = 120  # what CPython exits with when stdout cannot be flushed
    os._exit(status)


def spare():
    LIBC.prctl(PR_SET_PDEATHSIG, SIGKILL)
    if os.getppid() != PARENT:
        os._exit(0)
    while True:
        conn, _ = LSOCK.accept()
        cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", cred)
        if uid == BRIDGE_UID:
            break
        conn.close()
    os.write(NOTIFY, b"T%d\n" % os.getpid())
    try:
        fds, script, cwd, argv, env = recv_request(conn)
    except BaseException as e:
        try:
            conn.sendall(("E%s\n" % e).encode())
        finally:
            os._exit(0)
    if script != SCRIPT:
        for fd in fds:
            os.close(fd)
        conn.sendall(b"Enot this helper's script\n")
        os._exit(0)
    os.setpgid(0, 0)
    LSOCK.detach()  # fd 0 is about to be the script's stdin
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    conn.sendall(b"P%d\n" % os.getpid())
    conn.close()
    try:
        edited = signature(SCRIPT) != SIG
    except OSError:
        edited = True
    if edited:
        # Edited since the helper compiled it: this child compiles it anew;
        # the helper does too, for the spares to come.
        os.write(NOTIFY, b"S\n")
    os.close(CONTROL)
    os.close(NOTIFY)
    run(script, cwd, argv, env, edited)


# --- the helper ---------------------------------------------------------------

NOTIFY_R, NOTIFY = os.pipe()
spares, busy = {}, {}  # pid -> pidfd


def fork_spare():
    pid = os.fork()
    if pid == 0:
        os.close(NOTIFY_R)
        for fd in list(spares.values()) + list(busy.values()):
            os.close(fd)
        spare()
        os._exit(0)
    spares[pid] = os.pidfd_open(pid)


pending = b""
while True:
    while len(spares) < SPARES:
        fork_spare()
    byfd = {fd: pid for pid, fd in list(spares.items()) + list(busy.items())}
    ready, _, _ = select.select([NOTIFY_R] + list(byfd), [], [])
    for fd in ready:
        if fd == NOTIFY_R:
            pending += os.read(NOTIFY_R, 4096)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"T"):
                    pid = int(line[1:])
                    if pid in spares:
                        busy[pid] = spares.pop(pid)
                elif line == b"S":
                    try:
                        newsig = signature(SCRIPT)
                        if newsig != SIG:
                            # Spares forked already compile it themselves
                            # when they take a request (they check the
                            # signature); the ones to come need not.
                            SIG, SRC, CODE = compile_script()
                            for f in preload(SRC):
                                control("F", f)
                    except BaseException as e:
                        control("W", "recompiling the script: %s" % e)
            continue
        pid = byfd[fd]
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        if pid in busy:
            del busy[pid]
            control("X", "%d %d" % (pid, status))
        else:
            spares.pop(pid, None)
