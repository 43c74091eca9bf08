#!/usr/bin/env python3
"""Writes a directory tree as a gzip-compressed initramfs (cpio "newc"), the format the
Linux kernel unpacks at boot, so scripts/aarch64.sh needs no cpio tool on the host.

Usage: mkinitramfs.py ROOT_DIR OUTPUT.cpio.gz
Owners are written as root (uid/gid 0) whoever runs it; modes, symlinks and file contents
are kept.
"""
import gzip
import os
import stat
import sys


def header(ino, mode, nlink, mtime, size, name):
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad(n):
    return b"\0" * ((4 - n % 4) % 4)


def entries(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            yield os.path.join(dirpath, name)


def write(root, out):
    ino = 1
    for path in entries(root):
        rel = os.path.relpath(path, root).encode()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = b""
        head = header(ino, st.st_mode, 2 if stat.S_ISDIR(st.st_mode) else 1,
                      int(st.st_mtime), len(data), rel)
        out.write(head + rel + b"\0" + pad(len(head) + len(rel) + 1))
        out.write(data + pad(len(data)))
        ino += 1
    trailer = b"TRAILER!!!"
    head = header(ino, 0, 1, 0, 0, trailer)
    out.write(head + trailer + b"\0" + pad(len(head) + len(trailer) + 1))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkinitramfs.py ROOT_DIR OUTPUT.cpio.gz")
    root, output = sys.argv[1:]
    if not os.path.isdir(root):
        sys.exit(f"mkinitramfs.py: {root} is not a directory")
    with gzip.open(output, "wb", compresslevel=1) as out:
        write(root, out)


if __name__ == "__main__":
    main()
