"""``python -m bootstrap.lab.standins``: run the LAB SIMULATION controllers until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from bootstrap.lab.standins.kubelet import CONTROLLERS
from bootstrap.lab.standins.standinset import StandinSet


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bootstrap.lab.standins",
        description="LAB SIMULATION of Sealed Secrets, Argo CD and Flux controllers "
        "plus a kubelet shim, against a real API server. Lab use only.",
    )
    p.add_argument("--kubeconfig", required=True, type=Path)
    p.add_argument("--repo-root", type=Path, help="base for relative repoURL/url paths")
    p.add_argument("--interval", type=float, default=1.0, help="poll interval in seconds")
    p.add_argument("--state-dir", type=Path, help="git checkouts and Flux artifacts")
    p.add_argument(
        "--cert-port",
        type=int,
        default=0,
        help="serve the sealing cert at http://127.0.0.1:PORT/v1/cert.pem",
    )
    p.add_argument(
        "--autostart",
        action="append",
        default=[],
        choices=CONTROLLERS,
        help="start a controller without waiting for its workload",
    )
    p.add_argument("--no-workloads", action="store_true", help="do not run the kubelet shim")
    p.add_argument(
        "--ready-file",
        type=Path,
        help="write this file once every controller thread has started",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sset = StandinSet(
        args.kubeconfig,
        repo_root=args.repo_root,
        interval=args.interval,
        workloads=not args.no_workloads,
        autostart=args.autostart,
        state_dir=args.state_dir,
    )
    sset.start()
    if args.ready_file is not None:
        args.ready_file.write_text(f"{os.getpid()}\n")
    served: object = None  # the controller instance whose certificate is being served
    try:
        while not stop.wait(0.5):
            ss = sset.sealed_secrets
            # A restarted controller is a new instance: serve its certificate, not the old one
            # (the old instance's server closed when it stopped).
            if args.cert_port and ss is not None and ss.ready.is_set() and ss is not served:
                try:
                    ss.serve_cert(args.cert_port)
                    served = ss
                except OSError:
                    pass  # the old server is still closing; try again on the next tick
    finally:
        sset.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
