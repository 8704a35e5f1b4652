#!/usr/bin/env python3
"""Publishes an FLV file through librtmp, the RTMP library OBS Studio uses.

usage: librtmp_publish.py RTMP_URL FILE.flv
Exits 0 when the whole file was sent, 2 when the server refused the publish.
Needs Debian's python3-librtmp (scripts/setup.sh installs it) and /usr/bin/python3.
"""
import sys
import time

import librtmp


def main() -> int:
    url, path = sys.argv[1], sys.argv[2]
    conn = librtmp.RTMP(url, live=True)
    try:
        conn.connect()
        stream = conn.create_stream(writeable=True)
    except librtmp.RTMPError as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    with open(path, "rb") as f:
        data = f.read()
    # librtmp's writer takes FLV bytes and splits them into tags itself.
    for at in range(0, len(data), 64 * 1024):
        stream.write(data[at:at + 64 * 1024])
    time.sleep(0.5)
    stream.close()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
