#!/usr/bin/env python3
"""Publish the UI simulator, a pattern, a file or a lavfi graph to edge-vla by WHIP.

    tools/whip_publish.py http://127.0.0.1:8080/whip/default --source sim --execute

prints each action received on the data channel (JSON lines) and, with
--execute, carries it out on the simulator and sends feedback back: the closed
loop through WebRTC. See ``--help`` for the options.
"""

from edge_vla.publisher import main

if __name__ == "__main__":
    raise SystemExit(main())
