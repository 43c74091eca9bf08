#!/usr/bin/env python3
"""Writes a directory tree as a gzip-compressed initramfs (cpio "newc"), the format the
Linux kernel unpacks at boot, so scripts/aarch64.sh needs no cpio tool on the host.

Usage: mkinitramfs.py ROOT_DIR OUTPUT.cpio.gz
Owners are written as root (uid/gid 0) whoever runs it; modes, symlinks, device numbers
and file contents are kept (hard links become copies). /dev/console is added when the
tree has none, so the init's output reaches the console without root rights to mknod.
"""
import gzip
import os
import stat
import sys


def header(ino, mode, nlink, mtime, size, rdev, name):
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0,
              os.major(rdev), os.minor(rdev), len(name) + 1, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def pad(n):
    return b"\0" * ((4 - n % 4) % 4)


def entry(out, ino, name, mode, nlink=1, mtime=0, data=b"", rdev=0):
    head = header(ino, mode, nlink, mtime, len(data), rdev, name)
    out.write(head + name + b"\0" + pad(len(head) + len(name) + 1))
    out.write(data + pad(len(data)))


def paths(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            yield os.path.join(dirpath, name)


def write(root, out):
    ino = 1
    names = set()
    for path in paths(root):
        name = os.fsencode(os.path.relpath(path, root))
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            data = os.fsencode(os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        else:
            data = b""
        entry(out, ino, name, st.st_mode, 2 if stat.S_ISDIR(st.st_mode) else 1,
              int(st.st_mtime), data, st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0)
        names.add(name)
        ino += 1
    if b"dev/console" not in names:
        if b"dev" not in names:
            entry(out, ino, b"dev", stat.S_IFDIR | 0o755, 2)
            ino += 1
        entry(out, ino, b"dev/console", stat.S_IFCHR | 0o600, rdev=os.makedev(5, 1))
        ino += 1
    entry(out, ino, b"TRAILER!!!", 0)


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
