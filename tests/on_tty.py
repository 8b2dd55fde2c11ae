"""Runs a command with its standard error on a pseudo-terminal, as in an interactive shell.

usage: on_tty.py [--stdout-tty] STDERR_FILE COMMAND [ARG...]

Standard error's bytes go to STDERR_FILE as the terminal received them (carriage returns and
escape sequences included), standard output to this script's standard output (or, with
--stdout-tty, to the same terminal: then both are in STDERR_FILE). Exits with the command's
status (128 + N for a signal N).
"""
import os
import pty
import subprocess
import sys
import threading


def main():
    args = sys.argv[1:]
    both = args[:1] == ["--stdout-tty"]
    if both:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    outfile, cmd = args[0], args[1:]
    master, slave = pty.openpty()
    got = []

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            got.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave if both else None,
                            stderr=slave)
    os.close(slave)
    status = proc.wait()
    reader.join()
    os.close(master)
    with open(outfile, "wb") as f:
        f.write(b"".join(got))
    sys.exit(status if status >= 0 else 128 - status)


main()
