#!/usr/bin/env python3
"""A FUSE pass-through file system that fails on demand (campaign.rs's I/O-error test).

    faultfs.py BACKING MOUNTPOINT SWITCH

Mounts BACKING at MOUNTPOINT. While the file SWITCH exists, every call that changes
the file system (write, fsync, create, mkdir, rename, truncate, unlink, ...) fails with
EIO, as a failing disk's would; reads still work. If SWITCH holds the word "fsync", only
fsync fails: writes reach the page cache and the error comes when they are made durable,
as on a real disk. Removing SWITCH heals it. Runs in the foreground until unmounted.
Needs fusepy (PyPI) and libfuse2.
"""

import errno
import os
import sys

from fuse import FUSE, FuseOSError, Operations


class FaultFs(Operations):
    def __init__(self, backing, switch):
        self.backing = backing
        self.switch = switch

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _mode(self):
        try:
            with open(self.switch) as f:
                return f.read().strip() or "all"
        except FileNotFoundError:
            return None

    def _fail_if_broken(self):
        if self._mode() == "all":
            raise FuseOSError(errno.EIO)

    def _fail_sync_if_broken(self):
        if self._mode() is not None:
            raise FuseOSError(errno.EIO)

    # Reads.
    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC):
            self._fail_if_broken()
        return os.open(self._path(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        return os.close(fh)

    def flush(self, path, fh):
        return None

    # Changes: each fails while the switch is on.
    def chmod(self, path, mode):
        self._fail_if_broken()
        return os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        self._fail_if_broken()
        return os.chown(self._path(path), uid, gid)

    def create(self, path, mode, fi=None):
        self._fail_if_broken()
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT, mode)

    def write(self, path, data, offset, fh):
        self._fail_if_broken()
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        self._fail_if_broken()
        if fh is not None:
            return os.ftruncate(fh, length)
        with open(self._path(path), "r+b") as f:
            f.truncate(length)

    def fsync(self, path, datasync, fh):
        self._fail_sync_if_broken()
        return os.fdatasync(fh) if datasync else os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        self._fail_sync_if_broken()
        return None

    def mkdir(self, path, mode):
        self._fail_if_broken()
        return os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        self._fail_if_broken()
        return os.rmdir(self._path(path))

    def unlink(self, path):
        self._fail_if_broken()
        return os.unlink(self._path(path))

    def rename(self, old, new):
        self._fail_if_broken()
        return os.rename(self._path(old), self._path(new))

    def link(self, target, name):
        self._fail_if_broken()
        return os.link(self._path(name), self._path(target))

    def symlink(self, name, target):
        self._fail_if_broken()
        return os.symlink(target, self._path(name))

    def utimens(self, path, times=None):
        self._fail_if_broken()
        return os.utime(self._path(path), times)


if __name__ == "__main__":
    backing, mountpoint, switch = sys.argv[1:4]
    FUSE(FaultFs(os.path.abspath(backing), os.path.abspath(switch)), mountpoint, foreground=True, nothreads=False, attr_timeout=0, entry_timeout=0)
