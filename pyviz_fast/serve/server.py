"""Run the app with uvicorn on a host and port, after checking the port is free (a clear error
instead of uvicorn's log line and exit)."""
import errno
import socket


class PortInUse(OSError):
    """The port cannot be bound."""


def check_port(host: str, port: int) -> None:
    """Raise PortInUse naming the host and port if a server cannot listen there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
            raise PortInUse(f"port {port} on {host} {reason}; choose another with --port") from None


def serve(app, host="127.0.0.1", port=8000, log_level="warning") -> None:
    import uvicorn

    check_port(host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
