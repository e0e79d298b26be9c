"""Run the app with uvicorn on a socket bound here first: a port that cannot be bound is one
clear error (instead of uvicorn's log line and exit), and the caller hears only once it is bound."""
import errno
import socket


class PortInUse(OSError):
    """The port cannot be bound."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (not yet listening), or PortInUse naming them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
        raise PortInUse(f"port {port} on {host} {reason}; choose another with --port") from None
    return sock


def serve(app, host="127.0.0.1", port=8000, log_level="warning", ready=None) -> None:
    """Serve ``app`` until Ctrl-C; ``ready()`` is called once the port is bound (to say where)."""
    import uvicorn

    sock = bind(host, port)
    if ready is not None:
        ready()
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run(sockets=[sock])
