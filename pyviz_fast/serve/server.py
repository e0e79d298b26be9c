"""Run the app with uvicorn on a socket bound here first: a host or port that cannot be bound is
one clear error naming the flag to change (instead of uvicorn's log line and exit), and the caller
hears only once it is bound."""
import errno
import socket


class CannotListen(OSError):
    """The host cannot be resolved or bound; the message names the flag to change."""


class PortInUse(CannotListen):
    """The port cannot be bound."""


def url(host: str, port: int) -> str:
    """The page's address; an IPv6 address goes in brackets (http://[::1]:8000/)."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (not yet listening), or CannotListen naming them."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise CannotListen(f"host {host!r} cannot be resolved ({error.strerror}); choose another with --host "
                           "(127.0.0.1, or 0.0.0.0 for every address)") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRNOTAVAIL:
            raise CannotListen(f"host {host} is not an address of this machine ({error.strerror}); choose another "
                               "with --host (127.0.0.1, or 0.0.0.0 for every address)") from None
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
