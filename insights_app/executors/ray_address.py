"""Whether a Ray address answers as a Ray cluster does, told within seconds and without Ray.

``ray.init(address=...)`` retries an address that does not answer for about ten minutes (20
tries of up to 35 s each, in native code that holds off SIGTERM meanwhile). So before joining,
the address is probed here: a TCP connection within a few seconds, then the opening of an
HTTP/2 conversation, which Ray's GCS (and its client server, ``ray://``) answer at once since
both speak gRPC. A closed port, a host that does not answer and a server that is not Ray's are
then one sentence each. This module imports neither Ray nor torch: the command line checks
``--ray-address`` with it before loading the model.
"""

from __future__ import annotations

import os
import socket

CONNECT_TIMEOUT_S = 5.0  # for the TCP connection, then again for the server's first HTTP/2 frame
GCS_PORT = 6379  # Ray's default, when the address has no port
CLIENT_PORT = 10001  # Ray Client's default (ray://HOST)
# The client's opening (RFC 9113 section 3.4): the preface, then an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
H2_SETTINGS = 4  # the frame type every HTTP/2 server sends first


def host_and_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``HOST`` or ``ray://HOST[:PORT]`` as (host, port);
    None for what Ray resolves itself (``auto``, ``local``, other schemes)."""
    text = address.strip()
    port = GCS_PORT
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != "ray":
            return None
        port = CLIENT_PORT
        text = text.split("/", 1)[0]
    if text in ("", "auto", "local"):
        return None
    host, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and (not host.count(":") or host.startswith("[")):
        text, port = host, int(tail)
    return text.strip("[]"), port


def probe(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why ``address`` cannot be a Ray cluster, in a few words; None when it may be one (or when
    Ray resolves the address itself). Takes at most about twice ``timeout``."""
    where = host_and_port(address)
    if where is None:
        return None
    host, port = where
    if not 0 < port < 65536:
        return f"{port} is not a port number"
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        return f"unknown host {host!r} ({exc.strerror or exc})"
    except ConnectionRefusedError:
        return "nothing accepts connections there (connection refused): is the cluster running (ray start --head)?"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return None  # the conversation would start with TLS: the connection is all that is checked
        try:
            conn.sendall(H2_PREFACE)
            head = b""
            while len(head) < 9:
                more = conn.recv(9 - len(head))
                if not more:
                    break
                head += more
        except TimeoutError:
            return (
                f"something accepts connections there but gave no gRPC answer within {timeout:g} s: not a Ray cluster"
            )
        except OSError as exc:
            return f"the connection failed: {exc.strerror or exc}"
    if len(head) < 9 or head[3] != H2_SETTINGS:
        return "something answers there, but not as a Ray cluster does (no gRPC)"
    return None


__all__ = ["CONNECT_TIMEOUT_S", "host_and_port", "probe"]
