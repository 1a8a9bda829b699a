"""The ports `make run` listens on, each with the variable that moves it, and a check that they are
free before anything starts: a taken port is named in one line instead of a service's traceback."""

from __future__ import annotations

import errno
import socket
from collections import defaultdict
from dataclasses import dataclass

from devstack import Service

# Each listen variable of the plan: what the message calls the listener, and what moves its port.
_LISTENERS = {
    "LCE_SESSION_LISTEN": ("", "LCE_SESSION_PORT"),
    "LCE_EXECUTION_LISTEN": ("", "LCE_EXECUTION_PORT"),
    "LCE_EXECUTOR_HEALTH_LISTEN": (" health", "LCE_EXECUTOR_HEALTH_PORT"),
    "LCE_GATEWAY_LISTEN": ("", "LCE_GATEWAY_PORT"),
    "LCE_METRICS_LISTEN": (" metrics", "LCE_METRICS_LISTEN"),
}


@dataclass(frozen=True)
class PortClaim:
    host: str
    port: int
    listener: str  # as messages name it: "execution_service", "executor-1 health"
    variable: str  # the variable that moves it


def service_claims(service: Service) -> list[PortClaim]:
    """The ports a planned service will listen on (port 0, any free port, claims none)."""
    claims = []
    for listen_variable, (suffix, variable) in _LISTENERS.items():
        host, _, port = service.env.get(listen_variable, "").rpartition(":")
        if port and int(port):
            claims.append(PortClaim(host.strip("[]"), int(port), service.name + suffix, variable))
    return claims


def problems(claims: list[PortClaim]) -> list[str]:
    """One line per port that cannot be listened on, each naming the variable that moves it."""
    by_port: defaultdict[int, list[PortClaim]] = defaultdict(list)
    for claim in claims:
        by_port[claim.port].append(claim)
    lines = []
    for port, sharing in by_port.items():
        if len(sharing) > 1:
            *others, last = [f"{claim.listener} ({claim.variable})" for claim in sharing]
            lines.append(f"port {port} is wanted by {', '.join(others)} and {last}: move all but one")
        elif (problem := bind_problem(sharing[0])) is not None:
            lines.append(problem)
    return lines


def bind_problem(claim: PortClaim) -> str | None:
    """Why `claim` cannot be listened on now, or None when it can."""
    family = socket.AF_INET6 if ":" in claim.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As every server of ours binds: a closed connection's TIME_WAIT is no obstacle, a listener
        # or another program's connection from that port is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((claim.host, claim.port))
        except OSError as err:
            taken = err.errno == errno.EADDRINUSE
            cause = "is taken by another program" if taken else f"cannot be listened on ({err.strerror})"
        except OverflowError:
            cause = "is out of range"
        else:
            return None
    return f"port {claim.port} ({claim.listener}) {cause}: set {claim.variable} to move it"
