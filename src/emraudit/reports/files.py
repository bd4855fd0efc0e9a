"""Private report files: owner-only folders (0700) and files (0600), atomic swaps.

Reports name staff and (masked) patients: nobody but the account running emraudit may read
them — unless `[reports] group` names a group (a compliance team working under its own
accounts): then folders are 2750 and files 0640, owned by that group (`set_group`, called
where the configuration is loaded), so its members read them and everyone else still cannot. A scan's folder is written under a temporary name and renamed into place at the end,
so a crash never leaves half a report; `reports/latest` then points at it (a relative
symlink, or a one-line redirect page where symlinks are not available).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
GROUP: int | None = None        # the gid of [reports] group, when set


def set_group(name: str | None) -> None:
    """Let the members of group `name` read the report files written from now on (None:
    the owner only). A group that does not exist, or that this account may not give files
    to, is a configuration error naming `reports.group`."""
    global DIR_MODE, FILE_MODE, GROUP
    if not name:
        DIR_MODE, FILE_MODE, GROUP = 0o700, 0o600, None
        return
    import grp

    from emraudit.errors import ConfigError
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"no group '{name}' on this machine", key="reports.group") from None
    if os.getuid() != 0 and gid != os.getgid() and gid not in os.getgroups():
        raise ConfigError(f"this account is not a member of group '{name}', so it cannot "
                          "give report files to it", key="reports.group")
    DIR_MODE, FILE_MODE, GROUP = 0o750, 0o640, gid


def _restrict_dir(path: Path) -> None:
    if GROUP is None:
        os.chmod(path, DIR_MODE)
        return
    os.chown(path, -1, GROUP)
    os.chmod(path, DIR_MODE | stat.S_ISGID)    # what is made inside inherits the group


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) owner-only (or group-readable, see `set_group`).
    An existing folder that we own and that others can read (e.g. made by a log handler
    with the default umask) is tightened, unless it is a shared folder (sticky or
    world-writable, like /tmp) or the home folder."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
        _restrict_dir(path)
        return path
    st = path.stat()
    shared = st.st_mode & (stat.S_ISVTX | stat.S_IWOTH) or path.resolve() == Path.home()
    if st.st_uid != os.getuid() or shared or path.is_symlink():
        return path
    if GROUP is None and st.st_mode & 0o077:
        _restrict_dir(path)
    elif GROUP is not None and (st.st_gid != GROUP
                                or stat.S_IMODE(st.st_mode) != DIR_MODE | stat.S_ISGID):
        _restrict_dir(path)
    return path


def output_path(out, reports_dir: Path, folder: str, name: str) -> Path:
    """Where a report on request goes: `out` as given (a new folder for it made owner-only),
    else `reports_dir/folder/name` (both folders owner-only)."""
    if out is None:
        return private_dir(private_dir(reports_dir) / folder) / name
    out = Path(out)
    if not out.parent.exists():
        private_dir(out.parent)
    return out


def write_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        if GROUP is not None:
            os.fchown(fd, -1, GROUP)
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def temp_dir(root: Path, name: str) -> Path:
    """A fresh owner-only folder `root/.tmp-<name>-<random>`; stale ones (>1 h) removed."""
    private_dir(root)
    now = time.time()
    for old in root.glob(".tmp-*"):
        try:
            if old.is_dir() and now - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    tmp = root / f".tmp-{name}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=DIR_MODE)
    _restrict_dir(tmp)
    return tmp


def swap_into_place(tmp: Path, final: Path) -> Path:
    """Rename `tmp` to `final`, replacing an earlier rendering of the same report."""
    old = None
    if final.exists():
        old = final.with_name(f".tmp-old-{final.name}-{secrets.token_hex(4)}")
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def point_latest(root: Path, target: Path) -> Path:
    """Make `root/latest` lead to `target`: a relative symlink, else a redirect page."""
    latest = root / "latest"
    link_tmp = root / f".tmp-latest-{secrets.token_hex(4)}"
    try:
        os.symlink(target.name, link_tmp, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(link_tmp, latest)
        return latest
    except (OSError, NotImplementedError):
        if link_tmp.is_symlink():
            link_tmp.unlink()
    if latest.is_symlink():
        latest.unlink()
    private_dir(latest)
    href = f"../{target.name}/index.html"
    write_text(latest / "index.html",
               '<!DOCTYPE html><meta charset="utf-8">'
               f'<meta http-equiv="refresh" content="0; url={href}">'
               f'<a href="{href}">{target.name}</a>\n')
    return latest
